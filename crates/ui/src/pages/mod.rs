//! One module per area of the UI; handlers are thin: extract, call core, render.

pub mod directory;
pub mod entra;
pub mod groups;
pub mod locations;
pub mod me;
pub mod ops;
pub mod settings;
pub mod tokens;
pub mod users;

use crate::auth::SignedIn;
use axum::response::{IntoResponse, Redirect, Response};

/// `/`: admins land on the users list, everyone else on their account.
pub async fn home(me: SignedIn) -> Response {
    Redirect::to(if me.session.is_admin { "/users" } else { "/me" }).into_response()
}
