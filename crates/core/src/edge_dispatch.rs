//! Core's side of the edge link: executes one [`EdgeRequest`] and shapes the answer as
//! PROTOCOL.md section 3 prescribes (status codes and `{"error": ...}` bodies). Used by the
//! in-process link and by the network link alike.

use crate::{Actor, Core, CoreError};
use onramp_domain::token::{TokenRejection, TokenSecret};
use onramp_proto::link::{CoreLink, EdgeCall, EdgeReply, EdgeRequest, LinkFuture};
use serde::Serialize;
use serde_json::{json, Value};

impl Core {
    pub async fn handle_edge_request(&self, req: EdgeRequest) -> EdgeReply {
        let actor = Actor {
            user_id: None,
            name: "enrollment".into(),
            ip: req.meta.ip.clone(),
            user_agent: req.meta.user_agent.clone(),
            client: match (&req.meta.client_version, &req.meta.client_platform) {
                (None, None) => None,
                (v, p) => Some(format!("{} on {}", v.as_deref().unwrap_or("?"), p.as_deref().unwrap_or("?"))),
            },
        };
        let call = req.call.name();
        // A refused but known start token: the answer names whom to ask for a new one.
        let mut refused_start: Option<TokenSecret> = None;
        let result = match req.call {
            EdgeCall::Start { token, session } => {
                let session = session.as_deref().map(TokenSecret::from_user);
                let token = TokenSecret::from_user(&token);
                let r = to_json(self.enrollment_start_in(&actor, &token, session.as_ref()).await);
                if matches!(r, Err(CoreError::Token(_))) {
                    refused_start = Some(token);
                }
                r
            }
            EdgeCall::ActivateUser { token, password, phone_number } => self
                .activate_user(&actor, &TokenSecret::from_user(&token), password, phone_number)
                .await
                .map(|()| Value::Null),
            EdgeCall::CreateDevice { token, name, pubkey } => {
                to_json(self.enrollment_create_device(&actor, &TokenSecret::from_user(&token), &name, &pubkey).await)
            }
            EdgeCall::NetworkInfo { token, pubkey } => {
                to_json(self.network_info(&TokenSecret::from_user(&token), &pubkey).await)
            }
            EdgeCall::Poll { token } => self
                .poll(&TokenSecret::from_user(&token))
                .await
                .and_then(|c| serde_json::to_value(c).map_err(|e| CoreError::Internal(e.to_string())))
                .map(|c| json!({ "device_config": c })),
            EdgeCall::PasswordResetRequest { email } => {
                self.request_password_reset(&actor, &email).await.map(|()| Value::Null)
            }
            EdgeCall::PasswordResetStart { token, session } => self
                .start_password_reset_in(
                    &actor,
                    &TokenSecret::from_user(&token),
                    session.as_deref().map(TokenSecret::from_user).as_ref(),
                )
                .await
                .map(|deadline| json!({ "deadline_timestamp": deadline })),
            EdgeCall::PasswordReset { token, password } => {
                self.reset_password(&actor, &TokenSecret::from_user(&token), password).await.map(|()| Value::Null)
            }
        };
        metrics::counter!("onramp_edge_requests_total", "call" => call).increment(1);
        match result {
            Ok(body) => EdgeReply { id: req.id, status: 200, body },
            Err(e) => {
                let (status, message) = edge_error(&e);
                if status >= 500 {
                    tracing::error!(call, error = %e, "enrollment request failed");
                }
                let mut body = json!({ "error": message, "code": e.code() , "detail": detail(&e) });
                if let Some(token) = refused_start {
                    if let Some(admin) = self.contact_for_token(&token).await {
                        body["admin"] = json!(admin);
                    }
                }
                EdgeReply { id: req.id, status, body }
            }
        }
    }
}

/// The in-process link: single-host installs run core and edge in one process through the
/// same interface as the network link.
impl CoreLink for Core {
    fn call(&self, req: EdgeRequest) -> LinkFuture<'_> {
        Box::pin(async move { Ok(self.handle_edge_request(req).await) })
    }

    fn connected(&self) -> bool {
        true
    }
}

fn to_json<T: Serialize>(r: Result<T, CoreError>) -> Result<Value, CoreError> {
    r.and_then(|v| serde_json::to_value(v).map_err(|e| CoreError::Internal(e.to_string())))
}

/// Status and the message clients match on: "token expired" for expired tokens, "invalid
/// token" for unknown, used, revoked and ended ones (the `code` says which).
fn edge_error(e: &CoreError) -> (u16, String) {
    match e {
        CoreError::Token(TokenRejection::Expired) => (401, "token expired".into()),
        CoreError::Token(_) | CoreError::UnknownToken | CoreError::Unauthorized(_) => (401, "invalid token".into()),
        // To existing clients an unknown polling token; `code` and `detail` tell the rest.
        CoreError::Refused { code: crate::enrollment::DEVICE_REMOVED, .. } => (401, "invalid token".into()),
        CoreError::Refused { code: "user_disabled", message } | CoreError::Forbidden(message) => (403, message.clone()),
        CoreError::Invalid(_) | CoreError::Refused { .. } | CoreError::Conflict { .. } => (400, e.to_string()),
        CoreError::NotFound { .. } => (404, e.to_string()),
        CoreError::Internal(_) => (500, "internal error".into()),
    }
}

/// A sentence for people, telling the distinct token cases apart.
fn detail(e: &CoreError) -> String {
    match e {
        CoreError::Token(TokenRejection::Expired) => {
            "This enrollment token has expired. Ask your administrator for a new one.".into()
        }
        CoreError::Token(TokenRejection::Used) => {
            "This enrollment token was already used. Ask your administrator for a new one.".into()
        }
        CoreError::Token(TokenRejection::Revoked) => {
            "This enrollment token was revoked, probably because a newer one was issued.".into()
        }
        CoreError::Token(TokenRejection::SessionEnded) => {
            "The enrollment session has ended. Start again with your token, or ask your administrator for a new one."
                .into()
        }
        CoreError::UnknownToken => "This token is not known. Check that it was copied completely.".into(),
        CoreError::Internal(_) => "Something went wrong on the server. Try again later.".into(),
        other => other.to_string(),
    }
}
