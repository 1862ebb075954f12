//! Microsoft Entra ID custom security attributes (PROTOCOL.md 1.3): sign in (client
//! credentials from a secret file for labs and automation, or the device-code flow for a
//! person), then `GET /v1.0/users/{id}?$select=customSecurityAttributes` (or `/me`) and read
//! `EnrollmentToken` / `EnrollmentUrl` from the attribute set.

use crate::helper::ProvisionError;
use onramp_domain::provisioning::ProvisioningFile;
use serde_json::Value;
use std::time::Duration;

pub use onramp_directory::graph::{DEFAULT_ATTRIBUTE_SET, DEFAULT_GRAPH_URL, DEFAULT_LOGIN_URL};
/// Permission needed to read custom security attributes.
pub const PERMISSION: &str = "CustomSecAttributeAssignment.Read.All";

pub enum Credentials {
    /// App registration with a client secret (application permission).
    ClientSecret { client_id: String, secret: String },
    /// A person signs in on another device (delegated permission).
    DeviceCode { client_id: String },
}

pub struct EntraConfig {
    pub tenant: String,
    pub credentials: Credentials,
    pub graph_url: String,
    pub login_url: String,
    pub attribute_set: String,
}

fn http() -> reqwest::Client {
    crate::http::client()
}

/// The JSON answer, capped in size; a redirect is not followed and reads as no answer.
async fn answer(url: &str, r: reqwest::Response) -> Result<Value, ProvisionError> {
    crate::http::read_json(r).await.map_err(|e| ProvisionError::Unreachable(format!("{url}: {e}")))
}

fn unreachable(url: &str, e: reqwest::Error) -> ProvisionError {
    ProvisionError::Unreachable(format!("cannot reach {url}: {}", onramp_proto::error_chain(&e)))
}

async fn post_form(url: &str, form: &[(&str, &str)]) -> Result<(u16, Value), ProvisionError> {
    let r = http().post(url).form(form).send().await.map_err(|e| unreachable(url, e))?;
    let status = r.status().as_u16();
    Ok((status, answer(url, r).await?))
}

fn oauth_error(v: &Value) -> String {
    let code = v["error"].as_str().unwrap_or("error");
    let desc = v["error_description"].as_str().unwrap_or("").lines().next().unwrap_or("");
    format!("{code}: {desc}")
}

/// An access token for Microsoft Graph.
pub async fn access_token(cfg: &EntraConfig, show: &mut dyn FnMut(&str)) -> Result<String, ProvisionError> {
    let token_url = format!("{}/{}/oauth2/v2.0/token", cfg.login_url.trim_end_matches('/'), cfg.tenant);
    match &cfg.credentials {
        Credentials::ClientSecret { client_id, secret } => {
            use onramp_directory::DirectoryError;
            // The same grant as core's Entra ID sync.
            onramp_directory::graph::client_credentials_token(
                &http(),
                &cfg.login_url,
                &cfg.tenant,
                client_id,
                secret,
                &cfg.graph_url,
            )
            .await
            .map_err(|e| match e {
                DirectoryError::Credentials { message, .. } => ProvisionError::Credentials(message),
                e => ProvisionError::Unreachable(e.to_string()),
            })
        }
        Credentials::DeviceCode { client_id } => {
            let code_url = format!("{}/{}/oauth2/v2.0/devicecode", cfg.login_url.trim_end_matches('/'), cfg.tenant);
            let scope = format!("{}/{PERMISSION}", cfg.graph_url.trim_end_matches('/'));
            let (status, v) = post_form(&code_url, &[("client_id", client_id), ("scope", &scope)]).await?;
            let Some(device_code) = v["device_code"].as_str().filter(|_| status == 200) else {
                return Err(ProvisionError::Credentials(format!(
                    "Entra ID device sign-in failed ({status}): {}",
                    oauth_error(&v)
                )));
            };
            show(v["message"].as_str().unwrap_or("Sign in with the code shown by your administrator."));
            let mut interval = v["interval"].as_u64().unwrap_or(5).max(1);
            let deadline = std::time::Instant::now() + Duration::from_secs(v["expires_in"].as_u64().unwrap_or(900));
            loop {
                tokio::time::sleep(Duration::from_secs(interval)).await;
                let (status, t) = post_form(
                    &token_url,
                    &[
                        ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                        ("client_id", client_id),
                        ("device_code", device_code),
                    ],
                )
                .await?;
                if let Some(tok) = t["access_token"].as_str().filter(|_| status == 200) {
                    return Ok(tok.to_owned());
                }
                match t["error"].as_str() {
                    Some("authorization_pending") if std::time::Instant::now() < deadline => {}
                    Some("slow_down") => interval += 5,
                    _ => {
                        return Err(ProvisionError::Credentials(format!(
                            "Entra ID sign-in did not complete: {}",
                            oauth_error(&t)
                        )))
                    }
                }
            }
        }
    }
}

/// Reads the attribute set of `user` (object id or UPN), or of the signed-in user.
pub async fn read(
    cfg: &EntraConfig,
    user: Option<&str>,
    access_token: &str,
    allow_http: bool,
) -> Result<ProvisioningFile, ProvisionError> {
    let who = match user {
        Some(u) => format!("users/{}", url_path_segment(u)),
        None => "me".to_owned(),
    };
    let url = format!("{}/v1.0/{who}?$select=customSecurityAttributes", cfg.graph_url.trim_end_matches('/'));
    let r = http().get(&url).bearer_auth(access_token).send().await.map_err(|e| unreachable(&url, e))?;
    let status = r.status().as_u16();
    let v: Value = answer(&url, r).await?;
    let graph_message = v["error"]["message"].as_str().unwrap_or("").to_owned();
    let subject = user.unwrap_or("the signed-in user");
    match status {
        200 => {}
        401 => {
            return Err(ProvisionError::Credentials(format!(
                "Microsoft Graph refused the sign-in (401): {graph_message}"
            )))
        }
        403 => {
            return Err(ProvisionError::Credentials(format!(
                "Microsoft Graph denied access (403): the app needs the permission {PERMISSION}. {graph_message}"
            )))
        }
        404 => return Err(ProvisionError::Missing(format!("Entra ID has no user {subject} (404)"))),
        _ => return Err(ProvisionError::Unreachable(format!("Microsoft Graph answered {status}: {graph_message}"))),
    }
    let set = &v["customSecurityAttributes"][&cfg.attribute_set];
    if set.is_null() {
        return Err(ProvisionError::Missing(format!(
            "{subject} has no custom security attributes in the set {} (or the app may not read them)",
            cfg.attribute_set
        )));
    }
    let get = |k: &str| set[k].as_str().map(str::to_owned);
    let (Some(token), Some(url)) = (get("EnrollmentToken"), get("EnrollmentUrl")) else {
        return Err(ProvisionError::Malformed(format!(
            "the attribute set {} of {subject} needs the strings EnrollmentToken and EnrollmentUrl",
            cfg.attribute_set
        )));
    };
    let json = serde_json::json!({"enrollmentToken": token, "enrollmentUrl": url}).to_string();
    onramp_domain::provisioning::parse_directory_attribute(&json, allow_http)
        .map_err(|e| ProvisionError::Malformed(format!("attribute set {} of {subject}: {e}", cfg.attribute_set)))
}

/// Percent-encodes a user id or UPN for a URL path (UPNs contain '@', '#EXT#').
fn url_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_guest_upns() {
        assert_eq!(super::url_path_segment("ann_x.com#EXT#@t.onmicrosoft.com"), "ann_x.com%23EXT%23@t.onmicrosoft.com");
    }
}
