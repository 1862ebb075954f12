//! The app's pure parts: how a failure is told to a person, and how times, counts and
//! sizes read. No I/O here, so all of it is unit-tested.

use onramp_client::enroll::EnrollError;
use onramp_client::ApiError;

/// What "Try again" does after a failure.
#[derive(Clone, PartialEq, Eq)]
pub enum Retry {
    None,
    /// Open the session again (the edge could not be reached), with where the token came
    /// from (so a spent provisioning file is still deleted).
    Start {
        url: url::Url,
        token: String,
        found: Option<onramp_client::provision::Found>,
    },
}

/// Leaves the token out.
impl std::fmt::Debug for Retry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Retry::None => f.write_str("None"),
            Retry::Start { url, .. } => write!(f, "Start({url})"),
        }
    }
}

/// A failure as the window shows it: one sentence, whom to ask, and whether a retry helps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub headline: &'static str,
    pub sentence: String,
    pub admin: Option<String>,
    pub retry: Retry,
    /// The enrollment session cannot go on (a new token is needed).
    pub ends_session: bool,
}

impl Problem {
    pub fn plain(sentence: &str) -> Problem {
        Problem {
            headline: "Something went wrong",
            sentence: sentence.to_owned(),
            admin: None,
            retry: Retry::None,
            ends_session: true,
        }
    }

    /// `retry` is kept only where trying again can help (the edge was unreachable).
    pub fn of(e: &EnrollError, retry: Retry) -> Problem {
        let (headline, sentence, retry, ends_session) = match e {
            EnrollError::Api(a) => match a {
                ApiError::TokenExpired { .. } => (
                    "This invitation has expired",
                    "The enrollment token has expired. Ask your administrator for a new one.".to_owned(),
                    Retry::None,
                    true,
                ),
                ApiError::TokenUsed { .. } => (
                    "This invitation was already used",
                    "The enrollment token was already used. Ask your administrator for a new one.".to_owned(),
                    Retry::None,
                    true,
                ),
                ApiError::TokenRevoked { .. } => (
                    "This invitation was revoked",
                    "The enrollment token was revoked, probably because a newer one was sent to you. Use the newest invitation, or ask your administrator.".to_owned(),
                    Retry::None,
                    true,
                ),
                ApiError::SessionExpired { .. } => (
                    "The enrollment session ended",
                    "Enrollment sessions last 10 minutes. Ask your administrator for a new token.".to_owned(),
                    Retry::None,
                    true,
                ),
                ApiError::UnknownToken { url } => (
                    "This token is not known",
                    format!("{url} does not know this enrollment token. Check that it was copied completely, or ask your administrator."),
                    Retry::None,
                    true,
                ),
                ApiError::Network { url, .. } => (
                    "Cannot reach the server",
                    format!("Cannot reach {}. Check your internet connection, then try again.", origin(url)),
                    retry,
                    true,
                ),
                ApiError::AccountDisabled { message } => {
                    ("Your account is disabled", sentence_case(message), Retry::None, true)
                }
                ApiError::Rejected { message, .. } => (
                    "The server refused this step",
                    // The library names the CLI flag; here the field is on the screen.
                    sentence_case(&message.replace("; choose another with --device-name", "; choose another name")),
                    Retry::None,
                    false,
                ),
                other => ("Something went wrong", sentence_case(&other.to_string()), Retry::None, true),
            },
            EnrollError::AlreadyEnrolled { instance } => (
                "This computer is already enrolled",
                format!("This computer is already enrolled in {instance}."),
                Retry::None,
                true,
            ),
            EnrollError::Refused(m) => ("The server refused this step", sentence_case(m), Retry::None, true),
            other => ("Something went wrong", sentence_case(&other.to_string()), Retry::None, true),
        };
        let admin = match e {
            EnrollError::Api(a) => a.admin().map(str::to_owned),
            _ => None,
        };
        Problem { headline, sentence, admin, retry, ends_session }
    }
}

/// The enrollment URL and token from what the user pasted: a link that carries the token,
/// or a URL plus the token typed in its own field.
pub fn link_and_token(link: &str, typed_token: &str, allow_http: bool) -> Result<(url::Url, String), String> {
    let p = onramp_domain::link::parse_enroll_link(link, allow_http).map_err(|e| sentence_case(&e.to_string()))?;
    let token = p.token.unwrap_or_else(|| typed_token.trim().to_owned());
    if !onramp_domain::token::is_well_formed(&token) {
        return Err(format!(
            "The token must be 32 letters and digits (this one has {} characters).",
            token.chars().count()
        ));
    }
    Ok((p.url, token))
}

fn origin(url: &str) -> String {
    url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_else(|_| url.to_owned())
}

/// Capital first letter, full stop at the end.
pub fn sentence_case(s: &str) -> String {
    let s = s.trim();
    let mut c = s.chars();
    let mut out = match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect::<String>(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?', ')']) {
        out.push('.');
    }
    out
}

/// `9:05` left until `deadline` (unix seconds); `None` once it has passed.
pub fn countdown(deadline: i64, now: i64) -> Option<String> {
    let left = deadline - now;
    (left > 0).then(|| format!("{}:{:02}", left / 60, left % 60))
}

/// `just now`, `42 s ago`, `3 min ago`, `2 h ago`, `5 days ago`.
pub fn ago(then: i64, now: i64) -> String {
    let d = (now - then).max(0);
    match d {
        0..=4 => "just now".into(),
        5..=59 => format!("{d} s ago"),
        60..=3599 => format!("{} min ago", d / 60),
        3600..=86_399 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86_400),
    }
}

/// `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// What the instance's sync state means for its user, when it needs saying.
pub fn sync_note(state: &str) -> Option<&'static str> {
    match state {
        "needs_token" => Some("This computer needs a new token: use Update instance with one from your administrator."),
        "account_disabled" => Some("Your account is disabled. Contact your administrator."),
        "device_removed" => Some("Your administrator removed this device. Remove the instance, or enroll again."),
        "stopped" => Some("The server stopped serving this client."),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(countdown(1000, 400), Some("10:00".into()));
        assert_eq!(countdown(1000, 995), Some("0:05".into()));
        assert_eq!(countdown(1000, 1000), None);
        assert_eq!(ago(100, 101), "just now");
        assert_eq!(ago(100, 142), "42 s ago");
        assert_eq!(ago(0, 7200), "2 h ago");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
        assert_eq!(sentence_case("the token was used"), "The token was used.");
        assert_eq!(sentence_case(""), "");
    }

    #[test]
    fn pasted_links_and_typed_tokens() {
        let t = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";
        let (u, tok) = link_and_token(&format!("https://vpn.example.com/?token={t}"), "ignored", false).unwrap();
        assert_eq!((u.as_str(), tok.as_str()), ("https://vpn.example.com/", t));
        let (_, tok) = link_and_token("https://vpn.example.com/", &format!(" {t}\n"), false).unwrap();
        assert_eq!(tok, t);
        assert!(link_and_token("https://vpn.example.com/", "short", false).unwrap_err().contains("has 5 characters"));
        assert!(link_and_token("", t, false).unwrap_err().starts_with("Paste the enrollment link"));
    }

    #[test]
    fn token_problems_name_the_admin_and_never_offer_a_retry() {
        let admin = Some("Ada Admin <ada@example.com>".to_owned());
        let retry = Retry::Start { url: url::Url::parse("https://e/").unwrap(), token: "t".into(), found: None };
        for e in [
            ApiError::TokenExpired { admin: admin.clone() },
            ApiError::TokenUsed { admin: admin.clone() },
            ApiError::TokenRevoked { admin: admin.clone() },
        ] {
            let p = Problem::of(&EnrollError::Api(e), retry.clone());
            assert_eq!(p.admin, admin);
            assert_eq!(p.retry, Retry::None);
        }
        let net = ApiError::Network { url: "https://e/api/v1/enrollment/start".into(), message: "refused".into() };
        let p = Problem::of(&EnrollError::Api(net), retry.clone());
        assert_eq!(p.retry, retry);
        assert!(p.sentence.contains("https://e"), "{}", p.sentence);
    }
}
