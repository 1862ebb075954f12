//! The self-service portal: my devices, a desktop-client token for myself, my password.
//! Everything here acts on the signed-in user only.

use crate::auth::{page as render_page, SignedIn};
use crate::forms::{field, FormError};
use crate::layout::{self, csrf, notice_banner};
use crate::pages::tokens::token_card;
use crate::pages::users::devices_table;
use crate::Ui;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use onramp_proto::StartEnrollmentRequest;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct MeQuery {
    #[serde(default)]
    done: Option<String>,
}

async fn render(ui: &Ui, me: &SignedIn, done: Option<&str>, pw_error: Option<FormError>) -> Response {
    let devices = match ui.core.list_devices(Some(&me.session.user.username)).await {
        Ok(d) => d,
        Err(e) => return layout::core_error_page(Some(me), &e),
    };
    let has_locations = ui.core.has_locations().await.unwrap_or(false);
    let u = &me.session.user;
    let pw_err = Some(pw_error);
    let pw_err = pw_err.flatten();
    let body = html! {
        (notice_banner(done))
        section {
            h2 { "Profile" }
            dl.profile {
                dt { "Name" } dd { (u.first_name) " " (u.last_name) }
                dt { "Username" } dd { (u.username) }
                dt { "E-mail" } dd { (u.email) }
                @if let Some(p) = &u.phone { dt { "Phone" } dd { (p) } }
            }
        }
        section {
            h2 { "My devices" }
            (devices_table(me, &devices, "/me/devices", None))
        }
        section {
            h2 { "Configure desktop client" }
            p { "Get a one-time token to set up the Onramp desktop client on another computer. It works for your account only." }
            @if has_locations {
                form method="post" action="/me/desktop" {
                    (csrf(me))
                    button.primary #me-desktop type="submit" { "Configure desktop client" }
                }
            } @else {
                p.reason { "Unavailable: no VPN location exists yet. Ask your administrator." }
            }
        }
        section {
            h2 { "Change password" }
            form.card method="post" action="/me/password" {
                (csrf(me))
                @if let Some(e) = FormError::general(&pw_err, &["current_password", "password", "password2"]) {
                    p.error role="alert" { (e) } }
                (field("Current password", "current_password", "password", "", FormError::on(&pw_err, "current_password").as_deref(), true))
                (field("New password", "password", "password", "", FormError::on(&pw_err, "password").as_deref(), true))
                (field("New password again", "password2", "password", "", FormError::on(&pw_err, "password2").as_deref(), true))
                p.hint { "At least 8 characters with a lowercase and an uppercase letter, a digit and a special character." }
                button.primary type="submit" { "Change password" }
            }
        }
    };
    render_page(me, "My account", body)
}

pub async fn page(State(ui): State<Ui>, me: SignedIn, Query(q): Query<MeQuery>) -> Response {
    render(&ui, &me, q.done.as_deref(), None).await
}

pub async fn desktop(State(ui): State<Ui>, me: SignedIn) -> Response {
    let username = me.session.user.username.clone();
    match ui.core.start_desktop(&me.actor, &username, StartEnrollmentRequest::default()).await {
        Ok(r) => render_page(&me, "Configure desktop client", token_card(&me, &r, &username)),
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

pub async fn change_password(State(ui): State<Ui>, me: SignedIn, Form(f): Form<PasswordForm>) -> Response {
    if f.password != f.password2 {
        let err = FormError { field: Some("password2"), message: "the two new passwords differ".into() };
        let mut r = render(&ui, &me, None, Some(err)).await;
        *r.status_mut() = axum::http::StatusCode::BAD_REQUEST;
        return r;
    }
    match ui.core.change_own_password(&me.actor, &me.session, f.current_password, f.password).await {
        Ok(()) => Redirect::to("/me?done=password").into_response(),
        Err(e) => {
            let mut r = render(&ui, &me, None, Some(FormError::of(&e))).await;
            *r.status_mut() = layout::status_of(&e);
            r
        }
    }
}

pub async fn delete_device(State(ui): State<Ui>, me: SignedIn, Path(id): Path<i64>) -> Response {
    let username = me.session.user.username.clone();
    match ui.core.delete_device_of(&me.actor, &username, id).await {
        Ok(()) => Redirect::to("/me?done=device-deleted").into_response(),
        Err(e) => layout::core_error_page(Some(&me), &e),
    }
}
