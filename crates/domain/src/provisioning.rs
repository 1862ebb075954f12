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

#[cfg(test)]
mod tests {
    use super::*;

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
