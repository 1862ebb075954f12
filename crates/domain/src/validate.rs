//! Validated newtypes ("parse, don't validate"): once constructed, a value is known good.

use base64::Engine;
use std::fmt;

/// A rejected input, naming the field and the exact problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_inner(self) -> String {
                self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Login name: 1-64 chars of `[a-z0-9._-]`, starting with a letter or digit. Lower case so
/// that directory imports (case-insensitive in AD) cannot create look-alike duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Username(String);
string_newtype!(Username);

impl Username {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValidationError> {
        if s.is_empty() {
            return Err(ValidationError::new(field, "must not be empty"));
        }
        if s.len() > 64 {
            return Err(ValidationError::new(field, "must be at most 64 characters"));
        }
        let first = s.chars().next().unwrap_or(' ');
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(ValidationError::new(field, "must start with a lower-case letter or a digit"));
        }
        if let Some(bad) = s.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(*c))) {
            return Err(ValidationError::new(
                field,
                format!("contains {bad:?}; allowed are a-z, 0-9, '.', '_' and '-'"),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

/// E-mail address: a pragmatic check (one `@`, non-empty local part, a dotted domain, no
/// whitespace or control characters, at most 254 bytes); the SMTP server is the final judge.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);
string_newtype!(Email);

impl Email {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValidationError> {
        let invalid = |why: &str| ValidationError::new(field, format!("invalid e-mail address: {why}"));
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        if s.len() > 254 {
            return Err(invalid("longer than 254 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control() || "<>,;\"".contains(c)) {
            return Err(invalid("contains whitespace or a forbidden character"));
        }
        check_name_chars(field, s)?;
        let (local, domain) = s.rsplit_once('@').ok_or_else(|| invalid("missing '@'"))?;
        if local.is_empty() || local.contains('@') {
            return Err(invalid("the part before '@' must be non-empty and contain no '@'"));
        }
        if domain.len() < 3
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(invalid("the domain must look like example.com"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// Phone number as people type it: digits with optional `+`, spaces, dashes, dots and
/// parentheses; 3-32 characters.
pub fn parse_phone(field: &'static str, s: &str) -> Result<String, ValidationError> {
    let t = s.trim();
    if t.len() < 3 || t.len() > 32 {
        return Err(ValidationError::new(field, "must be 3-32 characters"));
    }
    if !t.chars().any(|c| c.is_ascii_digit()) || t.chars().any(|c| !(c.is_ascii_digit() || " +-().".contains(c))) {
        return Err(ValidationError::new(field, "may contain only digits, spaces, '+', '-', '.', '(' and ')'"));
    }
    Ok(t.to_owned())
}

/// The first character of `s` that must not appear in a name, if any: the Unicode general
/// categories Cc (control), Cf (format: bidirectional overrides such as U+202E, zero-width
/// characters such as U+200B), Zl and Zp (line and paragraph separators U+2028, U+2029).
/// Such characters hide or reorder text in e-mails, terminals and admin listings.
pub fn forbidden_name_char(s: &str) -> Option<char> {
    use unicode_general_category::{get_general_category, GeneralCategory as G};
    s.chars()
        .find(|c| matches!(get_general_category(*c), G::Control | G::Format | G::LineSeparator | G::ParagraphSeparator))
}

/// Rejects invisible, control and bidirectional characters (see [`forbidden_name_char`])
/// with an error naming the field and the code point.
pub fn check_name_chars(field: &'static str, s: &str) -> Result<(), ValidationError> {
    match forbidden_name_char(s) {
        Some(c) => Err(ValidationError::new(
            field,
            format!(
                "must not contain U+{:04X} (control, format, line or paragraph separator characters are not allowed)",
                c as u32
            ),
        )),
        None => Ok(()),
    }
}

/// A display name (first/last name, group, location, device, token name): trimmed,
/// non-empty, at most `max` characters, no control, format or separator characters.
pub fn parse_name(field: &'static str, s: &str, max: usize) -> Result<String, ValidationError> {
    // Only ASCII whitespace is trimmed: `str::trim` would silently drop a trailing U+2028 or
    // U+2029, which must be refused like anywhere else in the name.
    let t = s.trim_matches(|c: char| c.is_ascii_whitespace());
    if t.is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if t.chars().count() > max {
        return Err(ValidationError::new(field, format!("must be at most {max} characters")));
    }
    check_name_chars(field, t)?;
    Ok(t.to_owned())
}

/// A WireGuard public key: standard base64 of exactly 32 bytes (44 characters with padding).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WgPublicKey(String);
string_newtype!(WgPublicKey);

impl WgPublicKey {
    pub fn parse(field: &'static str, s: &str) -> Result<Self, ValidationError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(s.trim())
            .map_err(|_| ValidationError::new(field, "invalid public key: not standard base64"))?;
        if bytes.len() != 32 {
            return Err(ValidationError::new(field, format!("invalid public key: {} bytes, expected 32", bytes.len())));
        }
        let bytes: [u8; 32] = bytes.try_into().unwrap_or([0; 32]);
        if crate::wg::is_low_order_key(&bytes) {
            return Err(ValidationError::new(
                field,
                "invalid public key: a low-order Curve25519 point (such as all zeros), which no real key is; \
                 use the output of `wg pubkey`",
            ));
        }
        // Re-encode so that equal keys are equal strings (uniqueness is checked on text).
        Ok(Self(base64::engine::general_purpose::STANDARD.encode(bytes)))
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(base64::engine::general_purpose::STANDARD.encode(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn usernames() {
        assert!(Username::parse("username", "jane.doe-2_x").is_ok());
        for bad in ["", "Jane", "-jane", "jane doe", "jané", &"a".repeat(65)] {
            let e = Username::parse("username", bad).unwrap_err();
            assert_eq!(e.field, "username");
        }
    }

    #[test]
    fn emails() {
        assert!(Email::parse("email", "jane@example.com").is_ok());
        for bad in [
            "",
            "jane",
            "@example.com",
            "jane@",
            "jane@localhost",
            "ja ne@example.com",
            "jane@example..com",
            "a@b@c.com",
        ] {
            assert!(Email::parse("email", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn phones_and_names() {
        assert_eq!(parse_phone("phone", " +48 (12) 345-67 ").unwrap(), "+48 (12) 345-67");
        assert!(parse_phone("phone", "call me").is_err());
        assert!(parse_name("name", "  ", 10).is_err());
        assert!(parse_name("name", "abcdefghijk", 10).is_err());
        assert_eq!(parse_name("name", " Office ", 10).unwrap(), "Office");
    }

    #[test]
    fn public_keys() {
        let k = WgPublicKey::from_bytes([7u8; 32]);
        assert_eq!(WgPublicKey::parse("pubkey", k.as_str()).unwrap(), k);
        assert!(WgPublicKey::parse("pubkey", "not base64!").is_err());
        assert!(WgPublicKey::parse("pubkey", "AAAA").unwrap_err().message.contains("3 bytes"));
        let zero = WgPublicKey::from_bytes([0u8; 32]);
        let e = WgPublicKey::parse("pubkey", zero.as_str()).unwrap_err();
        assert_eq!(e.field, "pubkey");
        assert!(e.message.contains("low-order"), "{}", e.message);
        let mut p_minus_1 = [0xffu8; 32];
        p_minus_1[0] = 0xec;
        assert!(WgPublicKey::parse("pubkey", WgPublicKey::from_bytes(p_minus_1).as_str()).is_err());
    }

    proptest! {
        #[test]
        fn valid_usernames_roundtrip(s in "[a-z0-9][a-z0-9._-]{0,63}") {
            let u = Username::parse("u", &s).unwrap();
            prop_assert_eq!(u.as_str(), s.as_str());
        }

        #[test]
        fn any_32_bytes_but_low_order_points_is_a_key(b in proptest::array::uniform32(any::<u8>())) {
            let k = WgPublicKey::from_bytes(b);
            match WgPublicKey::parse("k", k.as_str()) {
                Ok(parsed) => {
                    prop_assert!(!crate::wg::is_low_order_key(&b));
                    prop_assert_eq!(parsed, k);
                }
                Err(_) => prop_assert!(crate::wg::is_low_order_key(&b)),
            }
        }

        #[test]
        fn names_with_invisible_or_bidi_characters_are_rejected(
            pre in "[a-zA-Z ]{0,10}",
            bad in prop::sample::select(vec!['\u{202E}', '\u{200B}', '\u{2028}', '\u{2029}', '\u{202A}',
                '\u{2066}', '\u{FEFF}', '\u{00AD}', '\u{0007}', '\u{0085}', '\u{061C}', '\u{E0001}']),
            post in "[a-zA-Z ]{0,10}",
        ) {
            let code = format!("U+{:04X}", bad as u32);
            // Inside the name, and at either end (where trimming must not hide it).
            for name in [format!("x{pre}{bad}{post}x"), format!("x{pre}{bad}"), format!("{bad}{post}x")] {
                let e = parse_name("device_name", &name, 64).unwrap_err();
                prop_assert_eq!(e.field, "device_name");
                prop_assert!(e.message.contains(&code), "{} lacks {}", e.message, code);
            }
        }

        #[test]
        fn names_of_printable_text_are_accepted(s in "[\\p{L}\\p{N}\\p{P}\\p{S}][\\p{L}\\p{M}\\p{N}\\p{P}\\p{S} ]{0,30}[\\p{L}\\p{N}]") {
            prop_assert_eq!(parse_name("name", &s, 64).unwrap(), s.trim());
        }

        #[test]
        fn email_parse_never_panics(s in "\\PC{0,80}") {
            let _ = Email::parse("email", &s);
        }
    }
}
