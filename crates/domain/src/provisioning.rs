//! Provisioning artifacts of PROTOCOL.md section 1.

use serde::{Deserialize, Serialize};
use std::fmt;

/// `provisioning.json` as the client reads it (snake_case). `Debug` redacts the token.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProvisioningFile {
    pub enrollment_token: String,
    pub enrollment_url: String,
}

impl fmt::Debug for ProvisioningFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProvisioningFile")
            .field("enrollment_token", &"<redacted>")
            .field("enrollment_url", &self.enrollment_url)
            .finish()
    }
}

/// The directory attribute value (Active Directory / LDAP), camelCase keys.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DirectoryAttribute {
    pub enrollment_url: String,
    pub enrollment_token: String,
}

impl fmt::Debug for DirectoryAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectoryAttribute")
            .field("enrollment_url", &self.enrollment_url)
            .field("enrollment_token", &"<redacted>")
            .finish()
    }
}

impl From<DirectoryAttribute> for ProvisioningFile {
    fn from(a: DirectoryAttribute) -> Self {
        Self { enrollment_token: a.enrollment_token, enrollment_url: a.enrollment_url }
    }
}

/// Why a `provisioning.json` cannot be used. Messages never contain the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvisioningError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is not valid UTF-16 text (it starts with a UTF-16 byte order mark)")]
    BadUtf16,
    #[error("the file is not UTF-8 text (invalid byte at offset {0}); save it as UTF-8")]
    NotUtf8(usize),
    #[error("the file is not UTF-8 text (it holds NUL bytes: UTF-16 without a byte order mark?); save it as UTF-8")]
    NulBytes,
    #[error("the file is not valid JSON: {0}")]
    Json(String),
    #[error(
        "the content must be a JSON object like {{\"enrollment_token\": \"...\", \"enrollment_url\": \"https://...\"}}"
    )]
    NotObject,
    #[error("the key {0:?} is missing")]
    Missing(&'static str),
    #[error("the key {0:?} must be a string, not {1}")]
    WrongType(&'static str, &'static str),
    #[error("the enrollment token must be 32 letters and digits (it has {0} characters{1})")]
    TokenShape(usize, &'static str),
    #[error("the enrollment URL {0:?} is not an absolute URL{hint}", hint = scheme_hint(.0))]
    NotAbsolute(String),
    #[error("the enrollment URL {0:?} must use https:// (plain http is allowed only when the operator enables it: ONRAMP_CLIENT_ALLOW_HTTP=1)")]
    Insecure(String),
}

/// Text of a provisioning file: UTF-8 with or without BOM (PowerShell 5.1 writes one), or
/// UTF-16 with a BOM (PowerShell's other default).
pub fn decode_text(bytes: &[u8]) -> Result<String, ProvisioningError> {
    let utf16 = |be: bool| {
        let units: Vec<u16> = bytes[2..]
            .chunks(2)
            .map(|c| {
                if c.len() == 2 {
                    if be {
                        u16::from_be_bytes([c[0], c[1]])
                    } else {
                        u16::from_le_bytes([c[0], c[1]])
                    }
                } else {
                    0xD800
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| ProvisioningError::BadUtf16)
    };
    let text = match bytes {
        [0xEF, 0xBB, 0xBF, rest @ ..] => String::from_utf8(rest.to_vec())
            .map_err(|e| ProvisioningError::NotUtf8(e.utf8_error().valid_up_to() + 3))?,
        [0xFF, 0xFE, ..] => utf16(false)?,
        [0xFE, 0xFF, ..] => utf16(true)?,
        _ => String::from_utf8(bytes.to_vec()).map_err(|e| ProvisioningError::NotUtf8(e.utf8_error().valid_up_to()))?,
    };
    if text.contains('\0') {
        return Err(ProvisioningError::NulBytes);
    }
    if text.trim().is_empty() {
        return Err(ProvisioningError::Empty);
    }
    Ok(text)
}

/// Parses and checks a provisioning file (PROTOCOL.md 1.1): both keys, a well-formed token,
/// an absolute https URL (http only when `allow_http`). Unknown keys are ignored.
pub fn parse_provisioning(bytes: &[u8], allow_http: bool) -> Result<ProvisioningFile, ProvisioningError> {
    parse_pair(&decode_text(bytes)?, ("enrollment_token", "enrollment_url"), allow_http)
}

/// Parses a directory attribute value (PROTOCOL.md 1.2/1.3: camelCase keys) with the same
/// checks, into the provisioning file it becomes.
pub fn parse_directory_attribute(text: &str, allow_http: bool) -> Result<ProvisioningFile, ProvisioningError> {
    if text.trim().is_empty() {
        return Err(ProvisioningError::Empty);
    }
    parse_pair(text, ("enrollmentToken", "enrollmentUrl"), allow_http)
}

fn parse_pair(
    text: &str,
    (token_key, url_key): (&'static str, &'static str),
    allow_http: bool,
) -> Result<ProvisioningFile, ProvisioningError> {
    // Parsed as a generic value first: serde's typed errors could quote the token.
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| ProvisioningError::Json(format!("{} at line {} column {}", classify(&e), e.line(), e.column())))?;
    let obj = v.as_object().ok_or(ProvisioningError::NotObject)?;
    let field = |key: &'static str| match obj.get(key) {
        None | Some(serde_json::Value::Null) => Err(ProvisioningError::Missing(key)),
        Some(serde_json::Value::String(s)) => Ok(s.trim().to_owned()),
        Some(other) => Err(ProvisioningError::WrongType(key, json_kind(other))),
    };
    let token = field(token_key)?;
    let url = field(url_key)?;
    if !crate::token::is_well_formed(&token) {
        let why = if token.chars().all(|c| c.is_ascii_alphanumeric()) { "" } else { ", not all letters and digits" };
        return Err(ProvisioningError::TokenShape(token.chars().count(), why));
    }
    check_url(&url, allow_http)?;
    Ok(ProvisioningFile { enrollment_token: token, enrollment_url: url })
}

/// "edge.example.com" is the usual mistake: say what is missing.
fn scheme_hint(url: &str) -> &'static str {
    if url.contains("://") {
        ""
    } else {
        "; add https:// in front"
    }
}

/// An edge URL a client may talk to: absolute, with a host, https unless `allow_http`.
pub fn check_url(url: &str, allow_http: bool) -> Result<url::Url, ProvisioningError> {
    let parsed = url::Url::parse(url).map_err(|_| ProvisioningError::NotAbsolute(url.to_owned()))?;
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(parsed),
        "http" if parsed.host_str().is_some() => {
            if allow_http {
                Ok(parsed)
            } else {
                Err(ProvisioningError::Insecure(url.to_owned()))
            }
        }
        _ => Err(ProvisioningError::NotAbsolute(url.to_owned())),
    }
}

fn classify(e: &serde_json::Error) -> &'static str {
    match e.classify() {
        serde_json::error::Category::Eof => "unexpected end of file",
        serde_json::error::Category::Syntax => "syntax error",
        _ => "unreadable data",
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
        _ => "null",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &str = "6B8fg2wiyczb1uDCDwUyMsnYz6qQBVu0";

    fn good() -> String {
        format!(r#"{{"enrollment_token":"{TOKEN}","enrollment_url":"https://edge.example.com/","extra":1}}"#)
    }

    #[test]
    fn accepts_utf8_bom_and_utf16() {
        assert_eq!(parse_provisioning(good().as_bytes(), false).unwrap().enrollment_token, TOKEN);
        let mut bom = vec![0xEF, 0xBB, 0xBF];
        bom.extend_from_slice(good().as_bytes());
        assert!(parse_provisioning(&bom, false).is_ok());
        for be in [false, true] {
            let mut b = if be { vec![0xFE, 0xFF] } else { vec![0xFF, 0xFE] };
            for u in good().encode_utf16() {
                b.extend_from_slice(&if be { u.to_be_bytes() } else { u.to_le_bytes() });
            }
            assert_eq!(parse_provisioning(&b, false).unwrap().enrollment_url, "https://edge.example.com/");
        }
    }

    #[test]
    fn specific_errors_without_the_token() {
        use ProvisioningError::*;
        let cases: Vec<(String, ProvisioningError)> = vec![
            ("".into(), Empty),
            ("  \n".into(), Empty),
            ("{".into(), Json("unexpected end of file at line 1 column 1".into())),
            ("[1]".into(), NotObject),
            (r#"{"enrollment_url":"https://e/"}"#.into(), Missing("enrollment_token")),
            (format!(r#"{{"enrollment_token":"{TOKEN}"}}"#), Missing("enrollment_url")),
            (
                r#"{"enrollment_token":5,"enrollment_url":"https://e/"}"#.into(),
                WrongType("enrollment_token", "a number"),
            ),
            (r#"{"enrollment_token":"abc","enrollment_url":"https://e/"}"#.into(), TokenShape(3, "")),
            (
                format!(r#"{{"enrollment_token":"{TOKEN}","enrollment_url":"edge.example.com"}}"#),
                NotAbsolute("edge.example.com".into()),
            ),
            (format!(r#"{{"enrollment_token":"{TOKEN}","enrollment_url":"http://e/"}}"#), Insecure("http://e/".into())),
        ];
        let (schemeless, _) = cases.iter().find(|(_, e)| matches!(e, NotAbsolute(_))).unwrap();
        let e = parse_provisioning(schemeless.as_bytes(), false).unwrap_err();
        assert!(e.to_string().ends_with("add https:// in front"), "{e}");
        for (text, want) in cases {
            let e = parse_provisioning(text.as_bytes(), false).unwrap_err();
            assert_eq!(e, want, "{text}");
            assert!(!e.to_string().contains(TOKEN));
        }
        assert_eq!(parse_provisioning(&[0x66, 0xFF, 0x00], false).unwrap_err(), NotUtf8(1));
        let http = format!(r#"{{"enrollment_token":"{TOKEN}","enrollment_url":"http://e/"}}"#);
        assert!(parse_provisioning(http.as_bytes(), true).is_ok());
    }

    #[test]
    fn directory_attribute_values() {
        let v = format!(r#"{{"enrollmentUrl":"https://edge.example.com/","enrollmentToken":"{TOKEN}"}}"#);
        assert_eq!(parse_directory_attribute(&v, false).unwrap().enrollment_token, TOKEN);
        assert_eq!(parse_directory_attribute("", false).unwrap_err(), ProvisioningError::Empty);
        let snake = format!(r#"{{"enrollment_url":"https://e/","enrollment_token":"{TOKEN}"}}"#);
        assert_eq!(
            parse_directory_attribute(&snake, false).unwrap_err(),
            ProvisioningError::Missing("enrollmentToken")
        );
        assert!(matches!(parse_directory_attribute("{oops", false).unwrap_err(), ProvisioningError::Json(_)));
    }

    proptest! {
        #[test]
        fn never_panics_and_never_echoes_a_token(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Err(e) = parse_provisioning(&bytes, false) {
                prop_assert!(!e.to_string().contains(TOKEN));
            }
        }

        /// Every accepted shape (UTF-8 with or without BOM, UTF-16 LE/BE with BOM, compact or
        /// pretty, keys in any order, unknown keys, blanks around values) reads back the same
        /// file; the directory attribute's camelCase form too.
        #[test]
        fn every_accepted_shape_round_trips(
            token in "[A-Za-z0-9]{32}",
            host in "[a-z][a-z0-9-]{0,20}(\\.[a-z]{2,6}){1,2}",
            path in "(/[a-zA-Z0-9_-]{1,8}){0,3}/?",
            encoding in 0usize..4,
            pretty in any::<bool>(),
            extra in proptest::option::of("[a-z_]{1,10}"),
            pad in "[ \t]{0,2}",
        ) {
            let url = format!("https://{host}{path}");
            let file = ProvisioningFile { enrollment_token: token.clone(), enrollment_url: url.clone() };
            let mut v = serde_json::to_value(&file).unwrap();
            if let Some(k) = extra.filter(|k| !k.starts_with("enrollment")) {
                v[k] = serde_json::json!({"ignored": [1, 2]});
            }
            v["enrollment_token"] = serde_json::json!(format!("{pad}{token}{pad}"));
            let text = if pretty { serde_json::to_string_pretty(&v).unwrap() } else { v.to_string() };
            let bytes: Vec<u8> = match encoding {
                0 => text.clone().into_bytes(),
                1 => [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat(),
                le_or_be => {
                    let be = le_or_be == 3;
                    let mut b = if be { vec![0xFE, 0xFF] } else { vec![0xFF, 0xFE] };
                    for u in text.encode_utf16() {
                        b.extend_from_slice(&if be { u.to_be_bytes() } else { u.to_le_bytes() });
                    }
                    b
                }
            };
            prop_assert_eq!(parse_provisioning(&bytes, false).unwrap(), file.clone());
            // Written back by the client (serde), it parses to the same file again.
            let written = serde_json::to_vec(&file).unwrap();
            prop_assert_eq!(parse_provisioning(&written, false).unwrap(), file.clone());
            let attr = serde_json::to_string(&DirectoryAttribute { enrollment_url: url, enrollment_token: token }).unwrap();
            prop_assert_eq!(parse_directory_attribute(&attr, false).unwrap(), file);
        }

        #[test]
        fn directory_attributes_never_panic(text in "\\PC{0,120}") {
            if let Err(e) = parse_directory_attribute(&text, true) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn wrong_shaped_tokens_are_refused(t in "[A-Za-z0-9!-]{0,40}") {
            let text = format!(r#"{{"enrollment_token":"{t}","enrollment_url":"https://e/"}}"#);
            let ok = parse_provisioning(text.as_bytes(), false).is_ok();
            prop_assert_eq!(ok, t.len() == 32 && t.chars().all(|c| c.is_ascii_alphanumeric()));
        }
    }

    #[test]
    fn formats() {
        let p = ProvisioningFile {
            enrollment_token: "6B8fg2wiyczb1uDCDwUyMsnYz6qQBVu0".into(),
            enrollment_url: "https://edge.example.com/".into(),
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"{"enrollment_token":"6B8fg2wiyczb1uDCDwUyMsnYz6qQBVu0","enrollment_url":"https://edge.example.com/"}"#
        );
        assert!(!format!("{p:?}").contains("6B8fg"));
        let a: DirectoryAttribute = serde_json::from_str(
            r#"{"enrollmentUrl":"https://edge.example.com/","enrollmentToken":"DuK8xRes5zYqem0fcAViQPRvIrNkGz7S","extra":1}"#,
        )
        .unwrap();
        assert_eq!(ProvisioningFile::from(a).enrollment_token, "DuK8xRes5zYqem0fcAViQPRvIrNkGz7S");
    }
}
