//! What a person pastes into the desktop app's "Add instance" field, or what the OS hands
//! it as a deep link: `onramp://enroll?url=...&token=...` (invitation mails), the browser
//! wizard's link `<enrollment url>?token=...`, or just the enrollment URL.

use crate::provisioning::{check_url, ProvisioningError};
use crate::token::is_well_formed;

/// Where to enroll, and the token when the link carried one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollLink {
    pub url: url::Url,
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("paste the enrollment link or URL from your invitation")]
    Empty,
    #[error("an onramp:// link must be onramp://enroll?url=...&token=... (this one opens {0:?})")]
    UnknownAction(String),
    #[error("the onramp:// link has no url=...; paste the whole link from the invitation")]
    NoUrl,
    #[error("the token in the link must be 32 letters and digits (it has {0} characters); paste the whole link")]
    BadToken(usize),
    #[error("{0}")]
    Url(ProvisioningError),
}

/// Reads `input` (trimmed). A token in the link must be well formed; a plain URL gives none.
pub fn parse_enroll_link(input: &str, allow_http: bool) -> Result<EnrollLink, LinkError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(LinkError::Empty);
    }
    let (url, token) = match url::Url::parse(input) {
        Ok(u) if u.scheme() == "onramp" => {
            // `onramp://enroll?...` parses with host "enroll"; `onramp:enroll?...` with a path.
            let action = u.host_str().map(str::to_owned).unwrap_or_else(|| u.path().trim_matches('/').to_owned());
            if action != "enroll" {
                return Err(LinkError::UnknownAction(action));
            }
            let url = u.query_pairs().find(|(k, _)| k == "url").map(|(_, v)| v.into_owned()).ok_or(LinkError::NoUrl)?;
            (url, u.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned()))
        }
        Ok(mut u) if u.query_pairs().any(|(k, _)| k == "token") => {
            // The wizard link: the token is a query parameter of the enrollment URL.
            let token = u.query_pairs().find(|(k, _)| k == "token").map(|(_, v)| v.into_owned());
            let rest: Vec<(String, String)> =
                u.query_pairs().filter(|(k, _)| k != "token").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            if rest.is_empty() {
                u.set_query(None);
            } else {
                u.query_pairs_mut().clear().extend_pairs(rest);
            }
            (u.to_string(), token)
        }
        _ => (input.to_owned(), None),
    };
    let url = check_url(&url, allow_http).map_err(LinkError::Url)?;
    if let Some(t) = &token {
        if !is_well_formed(t) {
            return Err(LinkError::BadToken(t.chars().count()));
        }
    }
    Ok(EnrollLink { url, token })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: &str = "AbCdEfGhIjKlMnOpQrStUvWxYz012345";

    #[test]
    fn reads_each_shape() {
        let deep = format!("onramp://enroll?url=https%3A%2F%2Fvpn.example.com%2F&token={T}");
        let l = parse_enroll_link(&deep, false).unwrap();
        assert_eq!((l.url.as_str(), l.token.as_deref()), ("https://vpn.example.com/", Some(T)));
        let wizard = format!("  https://vpn.example.com/?token={T}\n");
        let l = parse_enroll_link(&wizard, false).unwrap();
        assert_eq!((l.url.as_str(), l.token.as_deref()), ("https://vpn.example.com/", Some(T)));
        let plain = parse_enroll_link("https://vpn.example.com/", false).unwrap();
        assert_eq!(plain.token, None);
    }

    #[test]
    fn says_what_is_wrong() {
        assert_eq!(parse_enroll_link(" ", false), Err(LinkError::Empty));
        assert_eq!(parse_enroll_link("onramp://connect?x=1", false), Err(LinkError::UnknownAction("connect".into())));
        assert_eq!(parse_enroll_link("onramp://enroll?token=x", false), Err(LinkError::NoUrl));
        assert_eq!(
            parse_enroll_link("onramp://enroll?url=https%3A%2F%2Fe%2F&token=short", false),
            Err(LinkError::BadToken(5))
        );
        assert!(matches!(parse_enroll_link("http://e/", false), Err(LinkError::Url(ProvisioningError::Insecure(_)))));
        assert!(parse_enroll_link("http://e/", true).is_ok());
        assert!(matches!(parse_enroll_link("vpn.example.com", false), Err(LinkError::Url(_))));
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = parse_enroll_link(&s, true);
        }

        /// A deep link built the way invitation mails build it reads back to its parts.
        #[test]
        fn deep_links_round_trip(host in "[a-z]{1,12}(\\.[a-z]{2,6}){0,2}", path in "(/[a-z0-9]{1,8}){0,3}/?",
                                 token in "[A-Za-z0-9]{32}") {
            let edge = format!("https://{host}{path}");
            let mut deep = url::Url::parse("onramp://enroll").unwrap();
            deep.query_pairs_mut().append_pair("url", &edge).append_pair("token", &token);
            let l = parse_enroll_link(deep.as_str(), false).unwrap();
            prop_assert_eq!(l.url, url::Url::parse(&edge).unwrap());
            prop_assert_eq!(l.token, Some(token));
        }
    }
}
