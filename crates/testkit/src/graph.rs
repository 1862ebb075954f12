//! A local server that answers like the Microsoft identity platform and Microsoft Graph
//! for what the Entra ID sync and the client's provisioning helper use, with the
//! documented shapes and rules: the client credentials grant; `/v1.0/users` and
//! `/groups/{id}/transitiveMembers/microsoft.graph.user` paged by `$top` and
//! `@odata.nextLink`; groups found by `$filter=displayName eq '...'`; custom security
//! attributes returned only on `$select` and only to an app allowed to read them (else
//! left out, as Graph does), set and removed (`null`) by `PATCH /users/{id}`; application
//! permissions (403), expired tokens (401) and throttling (429 with `Retry-After`).

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

pub const TENANT: &str = "contoso.onmicrosoft.com";
pub const CLIENT_ID: &str = "6731de76-14a6-49ae-97bc-6eba6914391e";
pub const CLIENT_SECRET: &str = "Rq8Q~s3cret.value";
pub const READ_USERS: &str = "User.Read.All";
pub const READ_MEMBERS: &str = "GroupMember.Read.All";
pub const READ_ATTRIBUTES: &str = "CustomSecAttributeAssignment.Read.All";
pub const WRITE_ATTRIBUTES: &str = "CustomSecAttributeAssignment.ReadWrite.All";

#[derive(Default)]
struct Group {
    name: String,
    /// User and group ids.
    members: Vec<String>,
}

#[derive(Default)]
struct GraphState {
    /// id -> the user object (without `id`); ordered, so pages are stable.
    users: BTreeMap<String, Map<String, Value>>,
    groups: BTreeMap<String, Group>,
    /// Attribute sets defined in the tenant: writing another is refused.
    attribute_sets: BTreeSet<String>,
    permissions: BTreeSet<String>,
    tokens: BTreeSet<String>,
    next_id: u64,
    /// The next this many Graph requests are answered 429.
    throttle: u32,
    /// After this many more Graph requests, every access token expires.
    expire_after: Option<u64>,
    requests: u64,
    patches: u64,
    sign_ins: u64,
    throttled: u64,
}

/// The running fake. Cheap to clone.
#[derive(Clone)]
pub struct FakeGraph {
    pub url: String,
    state: Arc<Mutex<GraphState>>,
}

type Shared = Arc<Mutex<GraphState>>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message, "innerError": {"request-id": "test"}}})))
        .into_response()
}

impl FakeGraph {
    /// Starts the server on loopback, with the attribute set `Defguard` defined and the app
    /// holding every permission the sync uses.
    pub async fn start() -> FakeGraph {
        let state = Arc::new(Mutex::new(GraphState {
            attribute_sets: BTreeSet::from(["Defguard".to_owned()]),
            permissions: [READ_USERS, READ_MEMBERS, WRITE_ATTRIBUTES].into_iter().map(str::to_owned).collect(),
            ..GraphState::default()
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Graph");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .route("/v1.0/users", get(list_users))
            .route("/v1.0/users/{id}", get(get_user).patch(patch_user))
            .route("/v1.0/groups", get(find_groups))
            .route("/v1.0/groups/{id}/transitiveMembers/microsoft.graph.user", get(transitive_members))
            .with_state((state.clone(), url.clone()));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeGraph { url, state }
    }

    fn with<T>(&self, f: impl FnOnce(&mut GraphState) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    /// Adds a user (enabled); returns their object id.
    pub fn add_user(&self, upn: &str, given: &str, surname: &str, mail: Option<&str>) -> String {
        self.with(|s| {
            s.next_id += 1;
            let id = format!("00000000-0000-4000-8000-{:012x}", s.next_id);
            let mut u = Map::new();
            u.insert("userPrincipalName".into(), json!(upn));
            u.insert("mailNickname".into(), json!(upn.split('@').next().unwrap_or(upn)));
            u.insert("onPremisesSamAccountName".into(), Value::Null);
            u.insert("givenName".into(), json!(given));
            u.insert("surname".into(), json!(surname));
            u.insert("displayName".into(), json!(format!("{given} {surname}")));
            u.insert("mail".into(), json!(mail));
            u.insert("mobilePhone".into(), Value::Null);
            u.insert("businessPhones".into(), json!([]));
            u.insert("accountEnabled".into(), json!(true));
            s.users.insert(id.clone(), u);
            id
        })
    }

    /// Sets a property of a user (`accountEnabled`, `mail`, `surname`, ...).
    pub fn set(&self, id: &str, property: &str, value: Value) {
        self.with(|s| s.users.get_mut(id).expect("no such user").insert(property.into(), value));
    }

    pub fn remove_user(&self, id: &str) {
        self.with(|s| {
            s.users.remove(id);
            for g in s.groups.values_mut() {
                g.members.retain(|m| m != id);
            }
        });
    }

    /// Adds a group whose members are user or group ids; returns its id.
    pub fn add_group(&self, name: &str, members: &[&str]) -> String {
        self.with(|s| {
            s.next_id += 1;
            let id = format!("10000000-0000-4000-8000-{:012x}", s.next_id);
            s.groups.insert(
                id.clone(),
                Group { name: name.into(), members: members.iter().map(|m| m.to_string()).collect() },
            );
            id
        })
    }

    pub fn add_member(&self, group: &str, member: &str) {
        self.with(|s| s.groups.get_mut(group).expect("no such group").members.push(member.into()));
    }

    pub fn remove_member(&self, group: &str, member: &str) {
        self.with(|s| s.groups.get_mut(group).expect("no such group").members.retain(|m| m != member));
    }

    /// The user's `(EnrollmentToken, EnrollmentUrl)` in the set `Defguard`, if both are set.
    pub fn attributes(&self, id: &str) -> Option<(String, String)> {
        self.with(|s| {
            let set = s.users.get(id)?.get("customSecurityAttributes")?.get("Defguard")?.clone();
            Some((set["EnrollmentToken"].as_str()?.to_owned(), set["EnrollmentUrl"].as_str()?.to_owned()))
        })
    }

    /// Sets the user's attributes directly, as an admin in the portal would.
    pub fn set_attributes(&self, id: &str, token: &str, url: &str) {
        let set = json!({"Defguard": {"@odata.type": "#Microsoft.DirectoryServices.CustomSecurityAttributeValue",
            "EnrollmentToken": token, "EnrollmentUrl": url}});
        self.set(id, "customSecurityAttributes", set);
    }

    pub fn grant(&self, permission: &str) {
        self.with(|s| s.permissions.insert(permission.into()));
    }

    pub fn revoke(&self, permission: &str) {
        self.with(|s| s.permissions.remove(permission));
    }

    /// Answers the next `n` Graph requests with 429 and `Retry-After: 1`.
    pub fn throttle(&self, n: u32) {
        self.with(|s| s.throttle = n);
    }

    /// Every access token issued so far stops working (they expired).
    pub fn expire_tokens(&self) {
        self.with(|s| s.tokens.clear());
    }

    /// Every access token expires after `n` more Graph requests (mid-sync).
    pub fn expire_tokens_after(&self, n: u64) {
        self.with(|s| s.expire_after = Some(n));
    }

    /// `(Graph requests, PATCHes, sign-ins, 429s answered)`.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        self.with(|s| (s.requests, s.patches, s.sign_ins, s.throttled))
    }
}

async fn token(State((st, _)): State<(Shared, String)>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut s = st.lock().unwrap();
    if f.get("grant_type").map(String::as_str) != Some("client_credentials") {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "unsupported_grant_type"}))).into_response();
    }
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || f.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
    {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.\r\nTrace ID: t"})),
        )
            .into_response();
    }
    if !f.get("scope").is_some_and(|s| s.ends_with("/.default")) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_scope", "error_description": "AADSTS1002012"})),
        )
            .into_response();
    }
    s.sign_ins += 1;
    let t = format!("eyJ0eXAi.app-token-{}", s.sign_ins);
    s.tokens.insert(t.clone());
    Json(json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": t})).into_response()
}

/// Counts the request, then checks throttling, the token and the permission (any of
/// `need`): the refusal, if any.
fn admit(s: &mut GraphState, headers: &HeaderMap, need: &[&str]) -> Option<Response> {
    s.requests += 1;
    match s.expire_after {
        Some(0) => {
            s.tokens.clear();
            s.expire_after = None;
        }
        Some(n) => s.expire_after = Some(n - 1),
        None => {}
    }
    if s.throttle > 0 {
        s.throttle -= 1;
        s.throttled += 1;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            "Too many requests have been made; retry after the time in the Retry-After header.",
        );
        r.headers_mut().insert("retry-after", "1".parse().unwrap());
        return Some(r);
    }
    let bearer = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !bearer.is_some_and(|t| s.tokens.contains(t)) {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "Lifetime validation failed, the token is expired.",
        ));
    }
    if !need.is_empty() && !need.iter().any(|p| s.permissions.contains(*p)) {
        return Some(error(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation.",
        ));
    }
    None
}

/// The `$select`ed view of a user; custom security attributes only to an app that may read them.
fn view(s: &GraphState, id: &str, select: Option<&str>) -> Value {
    let u = &s.users[id];
    let mut out = Map::new();
    out.insert("id".into(), json!(id));
    let may_read = s.permissions.contains(READ_ATTRIBUTES) || s.permissions.contains(WRITE_ATTRIBUTES);
    let fields: Vec<&str> = match select {
        Some(sel) => sel.split(',').map(str::trim).collect(),
        None => {
            vec!["displayName", "givenName", "surname", "mail", "mobilePhone", "businessPhones", "userPrincipalName"]
        }
    };
    for f in fields {
        if f == "customSecurityAttributes" {
            // Graph returns the property only when selected, and empty to an app without access.
            let v = if may_read { u.get(f).cloned().unwrap_or(Value::Null) } else { Value::Null };
            out.insert(f.into(), v);
        } else if f != "id" {
            out.insert(f.into(), u.get(f).cloned().unwrap_or(Value::Null));
        }
    }
    Value::Object(out)
}

/// A page of the `total` items from `$skiptoken`, built by `item(i)` (only the page's), and
/// the next link.
fn page(
    base: &str,
    path: &str,
    q: &HashMap<String, String>,
    total: usize,
    item: impl Fn(usize) -> Value,
    default_top: usize,
) -> Response {
    let top = q.get("$top").and_then(|t| t.parse::<usize>().ok()).unwrap_or(default_top);
    if top == 0 || top > 999 {
        return error(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", "Invalid page size specified: '$top'.");
    }
    let skip =
        q.get("$skiptoken").and_then(|t| t.strip_prefix("X'")).and_then(|t| t.parse::<usize>().ok()).unwrap_or(0);
    let end = (skip + top).min(total);
    let value: Vec<Value> = (skip.min(end)..end).map(item).collect();
    let mut body = json!({"@odata.context": format!("{base}/v1.0/$metadata#{path}"), "value": value});
    if end < total {
        let mut params: Vec<(String, String)> =
            q.iter().filter(|(k, _)| k.as_str() != "$skiptoken").map(|(k, v)| (k.clone(), v.clone())).collect();
        params.sort();
        params.push(("$skiptoken".into(), format!("X'{end}")));
        let query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        body["@odata.nextLink"] = json!(format!("{base}/v1.0/{path}?{}", query.join("&")));
    }
    Json(body).into_response()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b',' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn list_users(
    State((st, base)): State<(Shared, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers, &[READ_USERS]) {
        return r;
    }
    let ids: Vec<&String> = s.users.keys().collect();
    page(&base, "users", &q, ids.len(), |i| view(&s, ids[i], q.get("$select").map(String::as_str)), 100)
}

fn find(s: &GraphState, id: &str) -> Option<String> {
    if s.users.contains_key(id) {
        return Some(id.to_owned());
    }
    s.users
        .iter()
        .find(|(_, u)| u["userPrincipalName"].as_str().is_some_and(|p| p.eq_ignore_ascii_case(id)))
        .map(|(k, _)| k.clone())
}

async fn get_user(
    State((st, _)): State<(Shared, String)>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers, &[READ_USERS]) {
        return r;
    }
    match find(&s, &id) {
        Some(id) => Json(view(&s, &id, q.get("$select").map(String::as_str))).into_response(),
        None => error(StatusCode::NOT_FOUND, "Request_ResourceNotFound", &format!("Resource '{id}' does not exist.")),
    }
}

async fn patch_user(
    State((st, _)): State<(Shared, String)>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers, &[WRITE_ATTRIBUTES]) {
        return r;
    }
    let Some(id) = find(&s, &id) else {
        return error(StatusCode::NOT_FOUND, "Request_ResourceNotFound", &format!("Resource '{id}' does not exist."));
    };
    let Some(sets) = body.get("customSecurityAttributes").and_then(Value::as_object) else {
        return error(
            StatusCode::BAD_REQUEST,
            "Request_BadRequest",
            "Only customSecurityAttributes may be updated here.",
        );
    };
    for (name, values) in sets {
        if !s.attribute_sets.contains(name) {
            return error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                &format!("Invalid property 'customSecurityAttributes': attribute set '{name}' is not defined."),
            );
        }
        if values["@odata.type"] != "#Microsoft.DirectoryServices.CustomSecurityAttributeValue" {
            return error(
                StatusCode::BAD_REQUEST,
                "Request_BadRequest",
                "The @odata.type of an attribute set is missing.",
            );
        }
        let Some(values) = values.as_object() else { continue };
        let user = s.users.get_mut(&id).unwrap();
        let all = user.entry("customSecurityAttributes").or_insert_with(|| json!({}));
        if all.is_null() {
            *all = json!({});
        }
        let set = all.as_object_mut().unwrap().entry(name.clone()).or_insert_with(|| json!({}));
        let set = set.as_object_mut().unwrap();
        for (k, v) in values {
            if v.is_null() {
                set.remove(k);
            } else {
                set.insert(k.clone(), v.clone());
            }
        }
    }
    s.patches += 1;
    StatusCode::NO_CONTENT.into_response()
}

async fn find_groups(
    State((st, base)): State<(Shared, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers, &[READ_MEMBERS]) {
        return r;
    }
    let filter = q.get("$filter").map(String::as_str).unwrap_or("");
    let Some(name) = filter.strip_prefix("displayName eq '").and_then(|r| r.strip_suffix('\'')) else {
        return error(StatusCode::BAD_REQUEST, "Request_UnsupportedQuery", "Unsupported filter.");
    };
    let name = name.replace("''", "'");
    let items: Vec<Value> = s
        .groups
        .iter()
        .filter(|(_, g)| g.name == name)
        .map(|(id, g)| json!({"id": id, "displayName": g.name}))
        .collect();
    page(&base, "groups", &q, items.len(), |i| items[i].clone(), 100)
}

async fn transitive_members(
    State((st, base)): State<(Shared, String)>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let mut s = st.lock().unwrap();
    if let Some(r) = admit(&mut s, &headers, &[READ_MEMBERS]) {
        return r;
    }
    if !s.groups.contains_key(&id) {
        return error(StatusCode::NOT_FOUND, "Request_ResourceNotFound", &format!("Resource '{id}' does not exist."));
    }
    // Flattened, each user once, nested groups followed (cycles too).
    let mut users = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![id.clone()];
    while let Some(g) = stack.pop() {
        if !seen.insert(g.clone()) {
            continue;
        }
        for m in &s.groups[&g].members {
            if s.groups.contains_key(m) {
                stack.push(m.clone());
            } else if s.users.contains_key(m) {
                users.insert(m.clone());
            }
        }
    }
    let users: Vec<&String> = users.iter().collect();
    let path = format!("groups/{id}/transitiveMembers/microsoft.graph.user");
    page(&base, &path, &q, users.len(), |i| view(&s, users[i], q.get("$select").map(String::as_str)), 100)
}
