//! Tokens (PROTOCOL.md section 2): 32 random alphanumeric characters, shown once, stored
//! only as a SHA-256 hash. The session state machine decides what an `enrollment/start`
//! does with a stored token at a given time.

use rand::{distributions::Alphanumeric, Rng, RngCore};
use sha2::{Digest, Sha256};
use std::fmt;

pub const TOKEN_LEN: usize = 32;

/// A token secret. `Debug` and `Display` never show it; call [`TokenSecret::expose`] at the
/// one place it is handed to the user.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenSecret(String);

impl TokenSecret {
    /// A fresh secret from `rng` (callers pass the OS RNG).
    pub fn generate(rng: &mut impl RngCore) -> Self {
        Self(rng.sample_iter(&Alphanumeric).take(TOKEN_LEN).map(char::from).collect())
    }

    /// Wraps user input without judging it: unknown tokens must still be looked up (and
    /// fail as "invalid token"), so shape checks live in [`is_well_formed`].
    pub fn from_user(s: &str) -> Self {
        Self(s.trim().to_owned())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Lookup key stored in the database instead of the secret.
    pub fn hash(&self) -> String {
        hash_secret(&self.0)
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

pub fn hash_secret(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// 32 characters of `[A-Za-z0-9]`.
pub fn is_well_formed(s: &str) -> bool {
    s.len() == TOKEN_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    Enrollment,
    DesktopConfig,
    PasswordReset,
    /// Enrolls one pre-created network device (a headless machine of one location, no user).
    NetworkDevice,
}

impl TokenKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enrollment => "enrollment",
            Self::DesktopConfig => "desktop_config",
            Self::PasswordReset => "password_reset",
            Self::NetworkDevice => "network_device",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "enrollment" => Self::Enrollment,
            "desktop_config" => Self::DesktopConfig,
            "password_reset" => Self::PasswordReset,
            "network_device" => Self::NetworkDevice,
            _ => return None,
        })
    }

    /// Kinds that open an enrollment session at `enrollment/start`.
    pub fn starts_enrollment(self) -> bool {
        matches!(self, Self::Enrollment | Self::DesktopConfig | Self::NetworkDevice)
    }
}

/// What the store knows of a token, in unix seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenTimes {
    pub expires_at: i64,
    pub session_deadline: Option<i64>,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Why a token cannot start (or continue) a session. Distinct so that the user is told
/// what happened; the edge maps all but `Expired` to "invalid token" for old clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    #[error("token expired")]
    Expired,
    #[error("token already used")]
    Used,
    #[error("token revoked")]
    Revoked,
    #[error("enrollment session expired")]
    SessionEnded,
}

/// Outcome of `enrollment/start` for a known token at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartDecision {
    /// First start: open a session ending at `deadline`.
    Open { deadline: i64 },
    /// Session already open: continue it with the same deadline (browser to desktop hand-off).
    Resume { deadline: i64 },
}

/// The session rules: revoked tokens are dead; an open session continues until its
/// deadline, also after enrollment completed in it (browser to desktop hand-off); after
/// that a used token says so; an unopened token opens a session if it has not expired.
pub fn decide_start(t: &TokenTimes, now: i64, session_secs: i64) -> Result<StartDecision, TokenRejection> {
    if t.revoked_at.is_some() {
        return Err(TokenRejection::Revoked);
    }
    match t.session_deadline {
        Some(deadline) if now < deadline => Ok(StartDecision::Resume { deadline }),
        _ if t.used_at.is_some() => Err(TokenRejection::Used),
        Some(_) => Err(TokenRejection::SessionEnded),
        None if now >= t.expires_at => Err(TokenRejection::Expired),
        None => Ok(StartDecision::Open { deadline: now + session_secs }),
    }
}

/// Is an open session still usable for a follow-up call (activate_user, create_device, ...)?
pub fn check_session(t: &TokenTimes, now: i64) -> Result<i64, TokenRejection> {
    if t.revoked_at.is_some() {
        return Err(TokenRejection::Revoked);
    }
    match t.session_deadline {
        Some(deadline) if now < deadline => Ok(deadline),
        Some(_) => Err(TokenRejection::SessionEnded),
        None if t.used_at.is_some() => Err(TokenRejection::Used),
        None => Err(TokenRejection::SessionEnded),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;

    fn fresh(expires_at: i64) -> TokenTimes {
        TokenTimes { expires_at, session_deadline: None, used_at: None, revoked_at: None }
    }

    #[test]
    fn secrets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let a = TokenSecret::generate(&mut rng);
        let b = TokenSecret::generate(&mut rng);
        assert!(is_well_formed(a.expose()));
        assert_ne!(a, b);
        assert_eq!(a.hash().len(), 64);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(!is_well_formed("short"));
        assert!(!is_well_formed(&"a".repeat(31).to_string().replace('a', "-")));
    }

    #[test]
    fn session_rules() {
        let t = fresh(1000);
        assert_eq!(decide_start(&t, 10, 600), Ok(StartDecision::Open { deadline: 610 }));
        assert_eq!(decide_start(&t, 1000, 600), Err(TokenRejection::Expired));
        let open = TokenTimes { session_deadline: Some(610), ..t };
        // Restart inside the session keeps the deadline, even past token expiry.
        assert_eq!(decide_start(&open, 609, 600), Ok(StartDecision::Resume { deadline: 610 }));
        assert_eq!(decide_start(&open, 610, 600), Err(TokenRejection::SessionEnded));
        assert_eq!(check_session(&open, 500), Ok(610));
        assert_eq!(check_session(&open, 700), Err(TokenRejection::SessionEnded));
        assert_eq!(check_session(&t, 5), Err(TokenRejection::SessionEnded));
        let revoked = TokenTimes { revoked_at: Some(5), ..open };
        assert_eq!(decide_start(&revoked, 6, 600), Err(TokenRejection::Revoked));
        let used = TokenTimes { used_at: Some(5), ..t };
        assert_eq!(decide_start(&used, 6, 600), Err(TokenRejection::Used));
        // Completed inside an open session: the hand-off still works until the deadline.
        let done = TokenTimes { used_at: Some(500), ..open };
        assert_eq!(decide_start(&done, 600, 600), Ok(StartDecision::Resume { deadline: 610 }));
        assert_eq!(decide_start(&done, 700, 600), Err(TokenRejection::Used));
    }

    proptest! {
        /// Whatever the state, a start never yields a deadline in the past, and a resumed
        /// session keeps the deadline it had.
        /// Generated tokens are well formed and their hash is stable; a user's copy with
        /// blanks around is the same token; kinds read back from their names.
        #[test]
        fn token_formats_round_trip(seed in any::<u64>(), kind in 0usize..4) {
            use rand::SeedableRng;
            let t = TokenSecret::generate(&mut rand::rngs::StdRng::seed_from_u64(seed));
            prop_assert!(is_well_formed(t.expose()));
            prop_assert_eq!(TokenSecret::from_user(&format!(" {}\n", t.expose())).hash(), t.hash());
            prop_assert_eq!(t.hash(), hash_secret(t.expose()));
            let k = [TokenKind::Enrollment, TokenKind::DesktopConfig, TokenKind::PasswordReset, TokenKind::NetworkDevice][kind];
            prop_assert_eq!(TokenKind::parse(k.as_str()), Some(k));
        }

        #[test]
        fn token_shapes_never_panic(s in "\\PC{0,40}") {
            prop_assert_eq!(is_well_formed(&s), s.len() == TOKEN_LEN && s.chars().all(|c| c.is_ascii_alphanumeric()));
            prop_assert_eq!(TokenKind::parse(&s).map(TokenKind::as_str), Some(s.as_str()).filter(|s| TokenKind::parse(s).is_some()));
        }

        #[test]
        fn deadlines_are_future(exp in 0i64..2000, dl in proptest::option::of(0i64..2000), now in 0i64..2000, sess in 1i64..1000) {
            let t = TokenTimes { expires_at: exp, session_deadline: dl, used_at: None, revoked_at: None };
            match decide_start(&t, now, sess) {
                Ok(StartDecision::Open { deadline }) => { prop_assert!(dl.is_none()); prop_assert!(deadline > now); prop_assert!(now < exp); }
                Ok(StartDecision::Resume { deadline }) => { prop_assert_eq!(Some(deadline), dl); prop_assert!(deadline > now); }
                Err(_) => {}
            }
        }
    }
}
