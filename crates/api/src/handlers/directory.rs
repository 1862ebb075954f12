use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiPath, ApiQuery};
use crate::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use onramp_core::{DirectorySource, SyncReport, SyncStatus, UserInfo};
use serde::Deserialize;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SyncParams {
    /// Read the directory and report what would change, writing nothing.
    pub dry_run: Option<bool>,
    /// `ldap` or `entra`; default: the configured one (LDAP first).
    pub source: Option<DirectorySource>,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SourceParams {
    /// `ldap` or `entra`; default: the configured one (LDAP first).
    pub source: Option<DirectorySource>,
}

/// Run a directory sync now
///
/// Reads the directory (LDAP: settings `directory.*` or `ONRAMP_LDAP_*` on the server;
/// Entra ID: `entra.*` or `ONRAMP_ENTRA_*`) and applies the changes: users created, updated, disabled; synced group memberships;
/// invitations and provisioning attributes. 503 when the directory cannot be read or
/// refuses the bind (nothing is changed); 409 while another sync runs.
#[utoipa::path(post, summary = "Run a directory sync now", path = "/api/v1/directory/sync", tag = "directory", security(("bearer" = [])),
    params(SyncParams),
    responses((status = 200, body = SyncReport), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn sync(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiQuery(p): ApiQuery<SyncParams>,
) -> ApiResult<Json<SyncReport>> {
    s.core.directory_sync(&actor, p.source, p.dry_run.unwrap_or(false)).await.map(Json).map_err(|e| {
        let status = match e.code() {
            "directory_unavailable" => Some(StatusCode::SERVICE_UNAVAILABLE),
            "sync_running" => Some(StatusCode::CONFLICT),
            _ => None,
        };
        let mut err = crate::error::ApiError::from(e);
        if let Some(st) = status {
            err.status = st;
        }
        err
    })
}

/// Directory sync status
///
/// Whether a sync is configured and scheduled, where one runs now, and the last run's
/// outcome (its counts, or its error and how many runs in a row failed).
#[utoipa::path(get, summary = "Directory sync status", path = "/api/v1/directory/status", tag = "directory", security(("bearer" = [])),
    params(SourceParams), responses((status = 200, body = SyncStatus), (status = 400, body = ErrorBody)))]
pub async fn status(
    State(s): State<AppState>,
    _a: Admin,
    ApiQuery(p): ApiQuery<SourceParams>,
) -> ApiResult<Json<SyncStatus>> {
    Ok(Json(s.core.directory_sync_status(p.source).await?))
}

/// Link a user to the directory
///
/// Hands a user created in Onramp over to a directory (`source`, default: the configured
/// one): from the next sync, its entry with the same username is authoritative for them.
#[utoipa::path(post, summary = "Link a user to the directory", path = "/api/v1/user/{username}/directory_link", tag = "directory",
    security(("bearer" = [])), params(("username" = String, Path), SourceParams),
    responses((status = 200, body = UserInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn link(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(username): ApiPath<String>,
    ApiQuery(p): ApiQuery<SourceParams>,
) -> ApiResult<Json<UserInfo>> {
    let source = match p.source {
        Some(source) => source,
        None => s.core.default_directory_source().await,
    };
    Ok(Json(s.core.set_directory_link(&actor, &username, Some(source)).await?))
}

/// Unlink a user from the directory
///
/// The user becomes Onramp's own again: syncs no longer change or disable them.
#[utoipa::path(delete, summary = "Unlink a user from the directory", path = "/api/v1/user/{username}/directory_link", tag = "directory",
    security(("bearer" = [])), params(("username" = String, Path)),
    responses((status = 200, body = UserInfo), (status = 404, body = ErrorBody)))]
pub async fn unlink(
    State(s): State<AppState>,
    Admin(actor): Admin,
    ApiPath(username): ApiPath<String>,
) -> ApiResult<Json<UserInfo>> {
    Ok(Json(s.core.set_directory_link(&actor, &username, None).await?))
}
