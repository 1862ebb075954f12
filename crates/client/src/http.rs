//! The HTTP client every server call uses: no redirects (a redirect could carry the
//! token and the password to another origin, or from https to http), and answers read up
//! to [`MAX_BODY_BYTES`] only.

use std::time::Duration;

/// The largest answer read from a server; real answers are a few kilobytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(format!("onramp-client/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("HTTP client")
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the answer is larger than {} MiB; refusing to read it", MAX_BODY_BYTES / (1024 * 1024))]
    TooLarge,
    #[error("the answer broke off: {0}")]
    Read(String),
}

/// The body, refused as soon as it passes [`MAX_BODY_BYTES`] (by its announced length or
/// while reading), so a hostile server cannot make the client hold a huge answer.
pub async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| BodyError::Read(onramp_proto::error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body as JSON (`Null` when empty or not JSON).
pub async fn read_json(resp: reqwest::Response) -> Result<serde_json::Value, BodyError> {
    let body = read_body(resp).await?;
    Ok(serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}
