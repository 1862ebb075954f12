//! VPN locations: create and edit, the gateway's status, connected devices, gateway tokens.

use crate::auth::{page, SignedIn, SignedInAdmin};
use crate::forms::{self, field, FormError};
use crate::layout::{self, csrf, notice_banner, time};
use crate::Ui;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{html, Markup};
use onramp_core::{LocationInfo, LocationInput, StringOrList};
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    done: Option<String>,
}

/// The form's values as typed (kept on an error).
#[derive(Default)]
struct LocationForm {
    name: String,
    address: String,
    endpoint: String,
    port: String,
    allowed_ips: String,
    dns: String,
    keepalive: String,
    mfa_mode: String,
    groups: Vec<String>,
}

impl LocationForm {
    fn of(l: &LocationInfo) -> Self {
        Self {
            name: l.name.clone(),
            address: l.address.join(", "),
            endpoint: l.endpoint.clone(),
            port: l.port.to_string(),
            allowed_ips: l.allowed_ips.join(", "),
            dns: l.dns.clone().unwrap_or_default(),
            keepalive: l.keepalive_interval.to_string(),
            mfa_mode: l.mfa_mode.to_string(),
            groups: l.allowed_groups.clone(),
        }
    }

    fn parse(body: &[u8]) -> Self {
        let v = |n: &str| forms::first_value(body, n).unwrap_or_default();
        Self {
            name: v("name"),
            address: v("address"),
            endpoint: v("endpoint"),
            port: v("port"),
            allowed_ips: v("allowed_ips"),
            dns: v("dns"),
            keepalive: v("keepalive_interval"),
            mfa_mode: v("mfa_mode"),
            groups: forms::all_values(body, "allowed_groups"),
        }
    }

    fn input(&self) -> Result<LocationInput, FormError> {
        let port = self.port.trim().parse::<i64>().map_err(|_| FormError {
            field: Some("port"),
            message: "the port must be a number such as 51820".into(),
        })?;
        let keepalive = match self.keepalive.trim() {
            "" => None,
            k => Some(k.parse::<i64>().map_err(|_| FormError {
                field: Some("keepalive_interval"),
                message: "the keepalive must be a number of seconds".into(),
            })?),
        };
        Ok(LocationInput {
            name: self.name.clone(),
            address: StringOrList::One(self.address.clone()),
            endpoint: self.endpoint.clone(),
            port,
            allowed_ips: Some(self.allowed_ips.trim()).filter(|a| !a.is_empty()).map(|a| StringOrList::One(a.into())),
            dns: Some(self.dns.clone()),
            allowed_groups: self.groups.clone(),
            pubkey: None,
            keepalive_interval: keepalive,
            mfa_mode: self.mfa_mode.trim().parse::<i64>().ok(),
        })
    }
}

fn form(
    me: &SignedIn,
    action: &str,
    f: &LocationForm,
    groups: &[String],
    err: &Option<FormError>,
    new: bool,
) -> Markup {
    let shown = [
        "name",
        "address",
        "endpoint",
        "port",
        "allowed_ips",
        "dns",
        "keepalive_interval",
        "mfa_mode",
        "allowed_groups",
    ];
    let e = |n: &str| FormError::on(err, n);
    html! {
        form.card method="post" action=(action) {
            (csrf(me))
            @if let Some(g) = FormError::general(err, &shown) { p.error role="alert" { (g) } }
            (field("Name", "name", "text", &f.name, e("name").as_deref(), true))
            (field("Gateway address and VPN subnet (e.g. 10.10.0.1/24)", "address", "text", &f.address, e("address").as_deref(), true))
            (field("Public endpoint (host name or IP clients connect to)", "endpoint", "text", &f.endpoint, e("endpoint").as_deref(), true))
            (field("UDP port", "port", "number", &f.port, e("port").as_deref(), true))
            (field("Routed networks (allowed IPs; default: the VPN subnet)", "allowed_ips", "text", &f.allowed_ips, e("allowed_ips").as_deref(), false))
            (field("DNS server", "dns", "text", &f.dns, e("dns").as_deref(), false))
            (field("Keepalive (seconds, default 25)", "keepalive_interval", "number", &f.keepalive, e("keepalive_interval").as_deref(), false))
            div.field {
                label for="f-mfa_mode" { "Multi-factor authentication" }
                select #f-mfa_mode name="mfa_mode" {
                    @for (v, l) in [("1", "Disabled"), ("2", "Internal"), ("3", "External")] {
                        option value=(v) selected[f.mfa_mode == v] { (l) }
                    }
                }
                @if let Some(m) = e("mfa_mode") { p.field-error { (m) } }
            }
            fieldset {
                legend { "Open to groups (none ticked: everyone)" }
                @for (i, g) in groups.iter().enumerate() {
                    div.check {
                        input type="checkbox" id={ "g-" (i) } name="allowed_groups" value=(g) checked[f.groups.contains(g)];
                        label for={ "g-" (i) } { (g) }
                    }
                }
                @if let Some(m) = e("allowed_groups") { p.field-error { (m) } }
            }
            div.buttons {
                button.primary type="submit" { (if new { "Create location" } else { "Save" }) }
                a.button href="/locations" { "Cancel" }
            }
        }
    }
}

async fn group_names(ui: &Ui) -> Vec<String> {
    ui.core.group_names().await.unwrap_or_default()
}

pub async fn list(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Query(q): Query<Done>) -> Response {
    let locations = match ui.core.list_locations().await {
        Ok(l) => l,
        Err(e) => return layout::core_error_page(Some(&me), &e),
    };
    let body = html! {
        (notice_banner(q.done.as_deref()))
        div.toolbar { span {} a.button.primary href="/locations/new" { "Add location" } }
        table.locations {
            thead { tr { th scope="col" { "Location" } th scope="col" { "Subnet" } th scope="col" { "Endpoint" }
                th scope="col" { "Groups" } th scope="col" { "Gateway" } } }
            tbody {
                @for l in &locations {
                    tr {
                        td { a href={ "/locations/" (l.id) } { (l.name) } }
                        td { (l.address.join(", ")) }
                        td { (l.endpoint) ":" (l.port) }
                        td { @if l.allowed_groups.is_empty() { span.muted { "everyone" } } @else { (l.allowed_groups.join(", ")) } }
                        td { @if l.gateway_connected { span.badge.up { "connected" } }
                             @else if l.pubkey.is_some() { span.badge.down { "not connected" } }
                             @else { span.badge.disabled { "no gateway yet" } } }
                    }
                }
                @if locations.is_empty() { tr { td colspan="5" { "No location yet. Users can enroll, but desktop clients need one to connect." } } }
            }
        }
    };
    page(&me, "Locations", body)
}

pub async fn new_form(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin) -> Response {
    let f = LocationForm { port: "51820".into(), keepalive: "25".into(), mfa_mode: "1".into(), ..Default::default() };
    let groups = group_names(&ui).await;
    page(&me, "Add location", form(&me, "/locations/new", &f, &groups, &None, true))
}

pub async fn create(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, body: Bytes) -> Response {
    let f = LocationForm::parse(&body);
    let result = match f.input() {
        Ok(input) => {
            ui.core.create_location(&me.actor, input).await.map_err(|e| (layout::status_of(&e), FormError::of(&e)))
        }
        Err(e) => Err((axum::http::StatusCode::BAD_REQUEST, e)),
    };
    match result {
        Ok(l) => Redirect::to(&format!("/locations/{}?done=created-location", l.id)).into_response(),
        Err((status, e)) => {
            let groups = group_names(&ui).await;
            let mut r = page(&me, "Add location", form(&me, "/locations/new", &f, &groups, &Some(e), true));
            *r.status_mut() = status;
            r
        }
    }
}

async fn render(
    ui: &Ui,
    me: &SignedIn,
    id: i64,
    f: Option<LocationForm>,
    err: Option<FormError>,
    extra: Markup,
) -> Response {
    let l = match ui.core.get_location(id).await {
        Ok(l) => l,
        Err(e) => return layout::core_error_page(Some(me), &e),
    };
    let stats = ui.core.location_stats(id).await.ok();
    let tokens = ui.core.list_gateway_tokens(id).await.unwrap_or_default();
    let groups = group_names(ui).await;
    let f = f.unwrap_or_else(|| LocationForm::of(&l));
    let base = format!("/locations/{id}");
    let body = html! {
        (extra)
        div.grid2 {
            div { h2 { "Settings" } (form(me, &base, &f, &groups, &err, false)) }
            div {
                h2 { "Gateway" }
                @match &stats {
                    Some(s) if !s.gateways.is_empty() => {
                        table { thead { tr { th scope="col" { "Host" } th scope="col" { "State" } th scope="col" { "Last seen" } } }
                            tbody { @for g in &s.gateways { tr {
                                td { (g.hostname) br; code { (g.pubkey) } }
                                td { @if g.connected { span.badge.up { "connected" } } @else { span.badge.down { "not connected" } } }
                                td { (g.last_seen_at.map(time).unwrap_or_default()) }
                            } } } }
                    }
                    _ => { p.muted { "No gateway has connected yet." } }
                }
                h2 { "Devices" }
                @match &stats {
                    Some(s) if !s.peers.is_empty() => {
                        table { thead { tr { th scope="col" { "Device" } th scope="col" { "User" } th scope="col" { "Last handshake" } th scope="col" { "In / out" } } }
                            tbody { @for p in &s.peers { tr {
                                td { (p.device) " " @if p.connected { span.badge.up { "connected" } } }
                                td { (p.user) }
                                td { (p.latest_handshake.map(time).unwrap_or_else(|| "never".into())) }
                                td { (bytes(p.rx_bytes)) " / " (bytes(p.tx_bytes)) }
                            } } } }
                    }
                    _ => { p.muted { "No device has addresses here yet." } }
                }
                h2 { "Gateway tokens" }
                p.hint { "A gateway signs in to core with one of these. Start it with "
                    code { "ONRAMP_GATEWAY_TOKEN_FILE=... onramp gateway" } "." }
                table { thead { tr { th scope="col" { "Name" } th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { span.visually-hidden { "Actions" } } } }
                    tbody { @for t in &tokens { tr {
                        td { (t.name.clone().unwrap_or_default()) }
                        td { (time(t.created_at)) " by " (t.created_by) }
                        td { (t.last_used_at.map(time).unwrap_or_else(|| "never".into())) }
                        td { @if t.revoked_at.is_some() { span.muted { "revoked" } } @else {
                            form method="post" action={ (base) "/gateway-tokens/" (t.id) "/revoke" } {
                                (csrf(me)) button type="submit" { "Revoke" } } } }
                    } } } }
                form method="post" action={ (base) "/gateway-tokens" } {
                    (csrf(me))
                    (field("Token name", "token_name", "text", "", None, false))
                    button #new-gateway-token type="submit" { "Create gateway token" }
                }
            }
        }
        h2 { "Delete location" }
        form method="post" action={ (base) "/delete" } {
            (csrf(me))
            p.hint { "Devices lose their addresses here and their gateway stops serving them." }
            button.danger type="submit" { "Delete location " (l.name) }
        }
        p { a href="/locations" { "← Locations" } }
    };
    page(me, &format!("Location {}", l.name), body)
}

fn bytes(n: i64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / f64::from(1u32 << 30)),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / f64::from(1u32 << 20)),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub async fn show(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(id): Path<i64>,
    Query(q): Query<Done>,
) -> Response {
    render(&ui, &me, id, None, None, notice_banner(q.done.as_deref())).await
}

pub async fn update(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(id): Path<i64>,
    body: Bytes,
) -> Response {
    let f = LocationForm::parse(&body);
    let result = match f.input() {
        Ok(input) => {
            ui.core.update_location(&me.actor, id, input).await.map_err(|e| (layout::status_of(&e), FormError::of(&e)))
        }
        Err(e) => Err((axum::http::StatusCode::BAD_REQUEST, e)),
    };
    match result {
        Ok(_) => Redirect::to(&format!("/locations/{id}?done=saved")).into_response(),
        Err((status, e)) => {
            let mut r = render(&ui, &me, id, Some(f), Some(e), html! {}).await;
            *r.status_mut() = status;
            r
        }
    }
}

pub async fn delete(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Path(id): Path<i64>) -> Response {
    match ui.core.delete_location(&me.actor, id).await {
        Ok(()) => Redirect::to("/locations?done=deleted").into_response(),
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    token_name: String,
}

pub async fn create_gateway_token(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(id): Path<i64>,
    axum::Form(f): axum::Form<TokenForm>,
) -> Response {
    match ui.core.create_gateway_token(&me.actor, id, Some(&f.token_name)).await {
        Ok(t) => {
            let shown = html! {
                div.notice role="status" {
                    p { "Gateway token created. It is shown only now: put it in the gateway's token file." }
                    div.copy-row {
                        label for="gateway-token" { "Gateway token" }
                        input #gateway-token readonly value=(t.token);
                        button.copy type="button" data-copy="gateway-token" { "Copy" }
                    }
                }
            };
            render(&ui, &me, id, None, None, shown).await
        }
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

pub async fn revoke_gateway_token(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path((id, token_id)): Path<(i64, i64)>,
) -> Response {
    match ui.core.revoke_gateway_token(&me.actor, id, token_id).await {
        Ok(()) => Redirect::to(&format!("/locations/{id}?done=revoked-gateway-token")).into_response(),
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}
