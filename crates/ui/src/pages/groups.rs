//! Groups: their members and the locations each opens.

use crate::auth::{page, SignedInAdmin};
use crate::forms::{checkbox, field, FormError};
use crate::layout::{self, csrf, notice_banner, seg};
use crate::Ui;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use onramp_core::GroupInput;
use serde::Deserialize;

#[derive(Deserialize, Default)]
pub struct Done {
    #[serde(default)]
    done: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct GroupForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    is_admin: Option<String>,
}

async fn render_list(
    ui: &Ui,
    me: &crate::auth::SignedIn,
    done: Option<&str>,
    f: &GroupForm,
    err: Option<FormError>,
) -> Response {
    let groups = match ui.core.list_groups().await {
        Ok(g) => g,
        Err(e) => return layout::core_error_page(Some(me), &e),
    };
    let err = Some(err).flatten();
    let body = html! {
        (notice_banner(done))
        table.groups {
            thead { tr { th scope="col" { "Group" } th scope="col" { "Admin" } th scope="col" { "Members" } th scope="col" { "Opens locations" } } }
            tbody {
                @for g in &groups {
                    tr {
                        td { a href={ "/groups/" (seg(&g.name)) } { (g.name) } }
                        td { @if g.is_admin { span.badge.enrolled { "admin" } } }
                        td { (g.members.len()) }
                        td { @if g.vpn_locations.is_empty() { span.muted { "none" } } @else { (g.vpn_locations.join(", ")) } }
                    }
                }
                @if groups.is_empty() { tr { td colspan="4" { "No groups yet." } } }
            }
        }
        p.hint { "A location open to no group in particular is open to everyone; the locations column lists those that name the group." }
        h2 { "Add group" }
        form.card method="post" action="/groups" {
            (csrf(me))
            @if let Some(e) = FormError::general(&err, &["name"]) { p.error role="alert" { (e) } }
            (field("Name", "name", "text", &f.name, FormError::on(&err, "name").as_deref(), true))
            (checkbox("Admin group (its members may use the admin UI and API)", "is_admin", f.is_admin.is_some()))
            div.buttons { button.primary type="submit" { "Create group" } }
        }
    };
    page(me, "Groups", body)
}

pub async fn list(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Query(q): Query<Done>) -> Response {
    render_list(&ui, &me, q.done.as_deref(), &GroupForm::default(), None).await
}

pub async fn create(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Form(f): Form<GroupForm>) -> Response {
    let input = GroupInput { name: f.name.trim().to_owned(), is_admin: f.is_admin.is_some(), members: vec![] };
    match ui.core.create_group(&me.actor, input).await {
        Ok(g) => Redirect::to(&format!("/groups/{}?done=created-group", seg(&g.name))).into_response(),
        Err(e) => {
            let mut r = render_list(&ui, &me, None, &f, Some(FormError::of(&e))).await;
            *r.status_mut() = layout::status_of(&e);
            r
        }
    }
}

async fn render_group(
    ui: &Ui,
    me: &crate::auth::SignedIn,
    name: &str,
    done: Option<&str>,
    err: Option<String>,
) -> Response {
    let g = match ui.core.get_group(name).await {
        Ok(g) => g,
        Err(e) => return layout::core_error_page(Some(me), &e),
    };
    let base = format!("/groups/{}", seg(&g.name));
    let body = html! {
        (notice_banner(done))
        @if let Some(e) = err { p.error role="alert" { (e) } }
        p { @if g.is_admin { span.badge.enrolled { "admin group" } " " } "Opens: "
            @if g.vpn_locations.is_empty() { span.muted { "no location names this group" } } @else { (g.vpn_locations.join(", ")) } }
        h2 { "Members" }
        table {
            thead { tr { th scope="col" { "Username" } th scope="col" { span.visually-hidden { "Actions" } } } }
            tbody {
                @for m in &g.members {
                    tr {
                        td { a href={ "/users/" (m) } { (m) } }
                        td { form method="post" action={ (base) "/members/" (seg(m)) "/remove" } {
                            (csrf(me))
                            button type="submit" aria-label={ "Remove " (m) " from " (g.name) } { "Remove" }
                        } }
                    }
                }
                @if g.members.is_empty() { tr { td colspan="2" { "No members." } } }
            }
        }
        form.card method="post" action={ (base) "/members" } {
            (csrf(me))
            (field("Add member (username)", "username", "text", "", None, true))
            div.buttons { button.primary type="submit" { "Add member" } }
        }
        h2 { "Delete group" }
        form method="post" action={ (base) "/delete" } {
            (csrf(me))
            p.hint { "Members stay; they lose the locations that only this group opened." }
            button.danger #delete-group type="submit" { "Delete group " (g.name) }
        }
        p { a href="/groups" { "← Groups" } }
    };
    page(me, &format!("Group {}", g.name), body)
}

pub async fn show(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(name): Path<String>,
    Query(q): Query<Done>,
) -> Response {
    render_group(&ui, &me, &name, q.done.as_deref(), None).await
}

/// The group's page again with why a change was refused, under the error's status.
async fn refused(ui: &Ui, me: &crate::auth::SignedIn, name: &str, e: &onramp_core::CoreError) -> Response {
    let mut r = render_group(ui, me, name, None, Some(layout::message_of(e))).await;
    *r.status_mut() = layout::status_of(e);
    r
}

#[derive(Deserialize)]
pub struct MemberForm {
    #[serde(default)]
    username: String,
}

pub async fn add_member(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path(name): Path<String>,
    Form(f): Form<MemberForm>,
) -> Response {
    match ui.core.add_group_member(&me.actor, &name, f.username.trim()).await {
        Ok(_) => Redirect::to(&format!("/groups/{}?done=saved", seg(&name))).into_response(),
        Err(e) => refused(&ui, &me, &name, &e).await,
    }
}

pub async fn remove_member(
    State(ui): State<Ui>,
    SignedInAdmin(me): SignedInAdmin,
    Path((name, username)): Path<(String, String)>,
) -> Response {
    match ui.core.remove_group_member(&me.actor, &name, &username).await {
        Ok(_) => Redirect::to(&format!("/groups/{}?done=saved", seg(&name))).into_response(),
        Err(e) => refused(&ui, &me, &name, &e).await,
    }
}

pub async fn delete(State(ui): State<Ui>, SignedInAdmin(me): SignedInAdmin, Path(name): Path<String>) -> Response {
    match ui.core.delete_group(&me.actor, &name).await {
        Ok(()) => Redirect::to("/groups?done=deleted").into_response(),
        Err(e) => refused(&ui, &me, &name, &e).await,
    }
}
