//! Reading Microsoft Entra ID for a sync through Microsoft Graph, and writing the
//! provisioning custom security attributes (PROTOCOL.md 1.3).
//!
//! An app registration signs in with client credentials. The synced groups are found by
//! display name; their members come from `transitiveMembers` (nested groups included, Graph
//! flattens them); the users' profiles, `accountEnabled` and, when asked for, their
//! attribute set come from `/users`. Every list follows `@odata.nextLink`, only on the
//! configured Graph host (the bearer token goes nowhere else). Throttling (429, 503, 504)
//! is waited out as `Retry-After` says; an expired token is renewed once.

use crate::{DirectoryError, ReadStats};
use onramp_domain::directory::{DirUser, Snapshot};
use onramp_domain::provisioning::DirectoryAttribute;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

pub const DEFAULT_GRAPH_URL: &str = "https://graph.microsoft.com";
pub const DEFAULT_LOGIN_URL: &str = "https://login.microsoftonline.com";
/// The attribute set PROTOCOL.md 1.3 names; it holds `EnrollmentToken` and `EnrollmentUrl`.
pub const DEFAULT_ATTRIBUTE_SET: &str = "Defguard";
/// Usernames come from one of these user properties (the UPN's part before '@').
pub const USERNAME_PROPERTIES: &[&str] = &["userPrincipalName", "mailNickname", "onPremisesSamAccountName"];

/// The most a list page may hold (Graph's maximum `$top` for users and members).
const MAX_PAGE: u32 = 999;
/// Throttled requests are retried this often, each wait capped, before the sync gives up.
const THROTTLE_RETRIES: u32 = 6;
const MAX_WAIT: Duration = Duration::from_secs(120);
/// A page of 999 users with their attributes is a few MiB; more is not an answer of Graph.
const MAX_BODY: usize = 64 * 1024 * 1024;

/// How to read Entra ID. `Debug` hides the secret.
#[derive(Clone)]
pub struct GraphSource {
    pub tenant: String,
    pub client_id: String,
    pub client_secret: String,
    /// `https://graph.microsoft.com` (or a national cloud's).
    pub graph_url: String,
    /// `https://login.microsoftonline.com` (or a national cloud's).
    pub login_url: String,
    /// Group display names whose members (nested included) are synced; empty: every user.
    pub groups: Vec<String>,
    /// One of [`USERNAME_PROPERTIES`].
    pub username_property: String,
    /// Read (and write) the provisioning attributes of this attribute set.
    pub attribute_set: Option<String>,
    /// Entries per page (`$top`), at most 999.
    pub page_size: u32,
}

impl std::fmt::Debug for GraphSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphSource")
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("graph_url", &self.graph_url)
            .field("groups", &self.groups)
            .field("username_property", &self.username_property)
            .field("attribute_set", &self.attribute_set)
            .finish_non_exhaustive()
    }
}

/// The HTTP client for Graph: no redirects (a token must not follow one), bounded waits.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("onramp/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client")
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The JSON body (`Null` when empty or not JSON), refused past [`MAX_BODY`].
async fn body(url: &str, mut r: reqwest::Response) -> Result<Value, DirectoryError> {
    let mut buf = Vec::new();
    while let Some(c) =
        r.chunk().await.map_err(|e| DirectoryError::Unreachable { url: url.to_owned(), message: chain(&e) })?
    {
        buf.extend_from_slice(&c);
        if buf.len() > MAX_BODY {
            return Err(DirectoryError::Other(format!("{url} answered more than {} MiB", MAX_BODY >> 20)));
        }
    }
    Ok(serde_json::from_slice(&buf).unwrap_or(Value::Null))
}

/// `code: description` of an OAuth error answer (first line: the rest is trace ids).
fn oauth_error(v: &Value) -> String {
    let code = v["error"].as_str().unwrap_or("error");
    let desc = v["error_description"].as_str().unwrap_or("").lines().next().unwrap_or("");
    format!("{code}: {desc}")
}

/// An app-only access token for Graph (OAuth 2.0 client credentials grant).
pub async fn client_credentials_token(
    http: &reqwest::Client,
    login_url: &str,
    tenant: &str,
    client_id: &str,
    secret: &str,
    graph_url: &str,
) -> Result<String, DirectoryError> {
    let url = format!("{}/{}/oauth2/v2.0/token", login_url.trim_end_matches('/'), tenant);
    let scope = format!("{}/.default", graph_url.trim_end_matches('/'));
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client_id),
        ("client_secret", secret),
        ("scope", scope.as_str()),
    ];
    let r = http
        .post(&url)
        .form(&form)
        .send()
        .await
        .map_err(|e| DirectoryError::Unreachable { url: url.clone(), message: chain(&e) })?;
    let status = r.status().as_u16();
    let v = body(&url, r).await?;
    match v["access_token"].as_str() {
        Some(t) if status == 200 => Ok(t.to_owned()),
        _ => Err(DirectoryError::Credentials {
            bind_dn: format!("the app {client_id} of tenant {tenant}"),
            message: format!("Entra ID sign-in failed ({status}): {}", oauth_error(&v)),
        }),
    }
}

/// A signed-in session with Graph for one sync.
pub struct GraphConnection {
    http: reqwest::Client,
    src: GraphSource,
    token: String,
    pub stats: ReadStats,
}

/// What a request is for, so that a refusal can name the permission it needs.
#[derive(Clone, Copy)]
enum Need {
    ReadUsers,
    ReadGroups,
    ReadAttributes,
    WriteAttributes,
}

impl Need {
    fn permission(self) -> &'static str {
        match self {
            Need::ReadUsers => "User.Read.All",
            Need::ReadGroups => "GroupMember.Read.All",
            Need::ReadAttributes => "CustomSecAttributeAssignment.Read.All",
            Need::WriteAttributes => "CustomSecAttributeAssignment.ReadWrite.All",
        }
    }
}

impl GraphConnection {
    pub async fn open(src: &GraphSource) -> Result<GraphConnection, DirectoryError> {
        let http = http_client();
        let token = client_credentials_token(
            &http,
            &src.login_url,
            &src.tenant,
            &src.client_id,
            &src.client_secret,
            &src.graph_url,
        )
        .await?;
        let stats = ReadStats { round_trips: 1, ..ReadStats::default() };
        Ok(GraphConnection { http, src: src.clone(), token, stats })
    }

    fn api(&self, path: &str) -> String {
        format!("{}/v1.0/{path}", self.src.graph_url.trim_end_matches('/'))
    }

    /// One Graph request, with throttling waited out and an expired token renewed once.
    async fn call(
        &mut self,
        method: reqwest::Method,
        url: &str,
        payload: Option<&Value>,
        need: Need,
    ) -> Result<Value, DirectoryError> {
        let mut renewed = false;
        let mut throttled = 0;
        loop {
            let mut req = self.http.request(method.clone(), url).bearer_auth(&self.token);
            if let Some(p) = payload {
                req = req.json(p);
            }
            let r = req
                .send()
                .await
                .map_err(|e| DirectoryError::Unreachable { url: url.to_owned(), message: chain(&e) })?;
            self.stats.round_trips += 1;
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let v = body(url, r).await?;
            let message = v["error"]["message"].as_str().unwrap_or("").to_owned();
            match status {
                200..=299 => return Ok(v),
                429 | 503 | 504 if throttled < THROTTLE_RETRIES => {
                    // Graph says how long to wait; without it, back off from 1 s, doubling.
                    let wait = retry_after.map(Duration::from_secs).unwrap_or(Duration::from_secs(1 << throttled));
                    throttled += 1;
                    tracing::warn!(status, wait_secs = wait.as_secs(), "Microsoft Graph is throttling; waiting");
                    tokio::time::sleep(wait.min(MAX_WAIT)).await;
                }
                429 | 503 | 504 => {
                    return Err(DirectoryError::Unreachable {
                        url: url.to_owned(),
                        message: format!(
                            "Microsoft Graph still answered {status} after {THROTTLE_RETRIES} waits: {message}"
                        ),
                    })
                }
                401 if !renewed => {
                    renewed = true;
                    self.token = client_credentials_token(
                        &self.http,
                        &self.src.login_url,
                        &self.src.tenant,
                        &self.src.client_id,
                        &self.src.client_secret,
                        &self.src.graph_url,
                    )
                    .await?;
                    self.stats.round_trips += 1;
                }
                401 => {
                    return Err(DirectoryError::Credentials {
                        bind_dn: format!("the app {}", self.src.client_id),
                        message: format!("Microsoft Graph refused the access token (401): {message}"),
                    })
                }
                403 => {
                    return Err(DirectoryError::Credentials {
                        bind_dn: format!("the app {}", self.src.client_id),
                        message: format!(
                            "Microsoft Graph denied access (403): grant the app the application permission {} \
                             (and admin consent). {message}",
                            need.permission()
                        ),
                    })
                }
                _ => {
                    let code = v["error"]["code"].as_str().unwrap_or("");
                    return Err(DirectoryError::Other(format!(
                        "Microsoft Graph answered {status} {code} to {method} {url}: {message}"
                    )));
                }
            }
        }
    }

    /// Every item of a list, page by page. A next link elsewhere than the Graph URL is
    /// refused: the token would go with it.
    async fn list(&mut self, first: String, need: Need) -> Result<Vec<Value>, DirectoryError> {
        let base = format!("{}/", self.src.graph_url.trim_end_matches('/'));
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let mut v = self.call(reqwest::Method::GET, &url, None, need).await?;
            match v["value"].take() {
                Value::Array(items) => out.extend(items),
                _ => return Err(DirectoryError::Other(format!("Microsoft Graph's answer to {url} holds no list"))),
            }
            if let Some(n) = v["@odata.nextLink"].as_str() {
                if !n.starts_with(&base) {
                    return Err(DirectoryError::Other(format!(
                        "Microsoft Graph sent a next page link outside {base}: {n}"
                    )));
                }
                next = Some(n.to_owned());
            }
        }
        Ok(out)
    }

    fn page(&self) -> u32 {
        self.src.page_size.clamp(1, MAX_PAGE)
    }

    /// Reads the synced groups' members and every user's profile.
    pub async fn read(&mut self) -> Result<Snapshot, DirectoryError> {
        let src = self.src.clone();
        // Group display names are not unique in Entra: every group with the name counts.
        let mut member_of: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut found = BTreeSet::new();
        for name in src.groups.iter().map(|g| g.trim()).filter(|g| !g.is_empty()) {
            let filter = format!("displayName eq '{}'", name.replace('\'', "''"));
            let url = url_with(&self.api("groups"), &[("$filter", &filter), ("$select", "id,displayName")]);
            let groups = self.list(url, Need::ReadGroups).await?;
            self.stats.group_entries += groups.len();
            for g in groups {
                let Some(id) = g["id"].as_str() else { continue };
                found.insert(name.to_owned());
                let url = url_with(
                    &self.api(&format!("groups/{}/transitiveMembers/microsoft.graph.user", segment(id))),
                    &[("$select", "id"), ("$top", &self.page().to_string())],
                );
                for m in self.list(url, Need::ReadGroups).await? {
                    if let Some(uid) = m["id"].as_str() {
                        member_of.entry(uid.to_owned()).or_default().insert(name.to_owned());
                    }
                }
            }
        }
        let mut select = String::from(
            "id,userPrincipalName,mailNickname,onPremisesSamAccountName,givenName,surname,displayName,mail,\
             mobilePhone,businessPhones,accountEnabled",
        );
        let need = match &src.attribute_set {
            Some(_) => {
                select.push_str(",customSecurityAttributes");
                Need::ReadAttributes
            }
            None => Need::ReadUsers,
        };
        let url = url_with(&self.api("users"), &[("$select", &select), ("$top", &self.page().to_string())]);
        let entries = self.list(url, need).await?;
        self.stats.user_entries = entries.len();
        let wanted = src.groups.iter().any(|g| !g.trim().is_empty());
        let mut users = Vec::new();
        for e in entries {
            let Some(id) = e["id"].as_str() else { continue };
            let groups = member_of.remove(id).unwrap_or_default();
            if wanted && groups.is_empty() {
                continue;
            }
            let Some(username) = username_of(&e, &src.username_property) else { continue };
            let text = |k: &str| e[k].as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
            let phone = text("mobilePhone").or_else(|| {
                e["businessPhones"].as_array().and_then(|a| a.iter().find_map(|p| p.as_str().map(str::to_owned)))
            });
            users.push(DirUser {
                username,
                first_name: text("givenName"),
                last_name: text("surname"),
                display_name: text("displayName"),
                // Users without a mailbox have no `mail`; their UPN is their address, except
                // for guests (`...#EXT#@tenant`).
                email: text("mail")
                    .or_else(|| text("userPrincipalName").filter(|u| u.contains('@') && !u.contains("#EXT#"))),
                phone,
                // Graph leaves out a property it has no value for: only `false` disables.
                disabled: e["accountEnabled"] == Value::Bool(false),
                groups,
                locator: id.to_owned(),
                attribute: src.attribute_set.as_deref().and_then(|set| attribute_of(&e, set)),
            });
        }
        Ok(Snapshot { users, groups: found })
    }

    /// Sets the provisioning attributes of the user with object id `id`, or removes them.
    pub async fn write_attribute(
        &mut self,
        id: &str,
        value: Option<&DirectoryAttribute>,
    ) -> Result<(), DirectoryError> {
        let set = self.src.attribute_set.clone().unwrap_or_else(|| DEFAULT_ATTRIBUTE_SET.into());
        let (token, url) = match value {
            Some(v) => (json!(v.enrollment_token), json!(v.enrollment_url)),
            None => (Value::Null, Value::Null),
        };
        let payload = json!({"customSecurityAttributes": {&set: {
            "@odata.type": "#Microsoft.DirectoryServices.CustomSecurityAttributeValue",
            "EnrollmentToken": token,
            "EnrollmentUrl": url,
        }}});
        let target = self.api(&format!("users/{}", segment(id)));
        self.call(reqwest::Method::PATCH, &target, Some(&payload), Need::WriteAttributes).await.map(drop).map_err(|e| {
            match e {
                // One user's refusal (a missing attribute definition) is that user's problem.
                DirectoryError::Other(m) => DirectoryError::Other(format!("cannot write the {set} attributes: {m}")),
                e => e,
            }
        })
    }
}

/// The username from the chosen property: the UPN's part before '@'.
fn username_of(e: &Value, property: &str) -> Option<String> {
    let v = e[property].as_str()?.trim();
    let v = if property == "userPrincipalName" { v.split('@').next().unwrap_or(v) } else { v };
    (!v.is_empty()).then(|| v.to_owned())
}

/// The attribute set's `EnrollmentToken` / `EnrollmentUrl`, as the JSON of PROTOCOL.md 1.2
/// (the same value an LDAP attribute holds), or `None` when either is missing.
fn attribute_of(e: &Value, set: &str) -> Option<String> {
    let s = &e["customSecurityAttributes"][set];
    let token = s["EnrollmentToken"].as_str().filter(|t| !t.is_empty())?;
    let url = s["EnrollmentUrl"].as_str().filter(|u| !u.is_empty())?;
    serde_json::to_string(&DirectoryAttribute { enrollment_url: url.to_owned(), enrollment_token: token.to_owned() })
        .ok()
}

/// `base?k=v&...`, each value percent-encoded.
fn url_with(base: &str, params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
    format!("{base}?{}", q.join("&"))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'$' | b',' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An object id or UPN as one path segment.
fn segment(s: &str) -> String {
    encode(s).replace("%40", "@")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_come_from_the_upn_local_part() {
        let e = json!({"userPrincipalName": "Ann.Lee@contoso.com", "mailNickname": "alee"});
        assert_eq!(username_of(&e, "userPrincipalName").as_deref(), Some("Ann.Lee"));
        assert_eq!(username_of(&e, "mailNickname").as_deref(), Some("alee"));
        assert_eq!(username_of(&e, "onPremisesSamAccountName"), None);
    }

    #[test]
    fn filters_are_quoted_and_encoded() {
        let url = url_with("https://g/v1.0/groups", &[("$filter", "displayName eq 'O''Brien & co'")]);
        assert_eq!(url, "https://g/v1.0/groups?$filter=displayName%20eq%20%27O%27%27Brien%20%26%20co%27");
        assert_eq!(segment("ann_x.com#EXT#@t.onmicrosoft.com"), "ann_x.com%23EXT%23@t.onmicrosoft.com");
    }

    #[test]
    fn attributes_need_both_values() {
        let e =
            json!({"customSecurityAttributes": {"Defguard": {"EnrollmentToken": "t", "EnrollmentUrl": "https://e/"}}});
        let v: DirectoryAttribute = serde_json::from_str(&attribute_of(&e, "Defguard").unwrap()).unwrap();
        assert_eq!((v.enrollment_token.as_str(), v.enrollment_url.as_str()), ("t", "https://e/"));
        let half = json!({"customSecurityAttributes": {"Defguard": {"EnrollmentUrl": "https://e/"}}});
        assert_eq!(attribute_of(&half, "Defguard"), None);
        assert_eq!(attribute_of(&json!({}), "Defguard"), None);
    }
}
