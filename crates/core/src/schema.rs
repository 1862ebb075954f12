//! OpenAPI schemas that name the values of integer and string modes, while the wire keeps
//! PROTOCOL.md's values (`x-enum-varnames` carries the names for generators and readers).

use std::borrow::Cow;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

fn named(ty: Type, values: &[serde_json::Value], names: &[&str], description: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(ty)
        .enum_values(Some(values.to_vec()))
        .description(Some(description))
        .extensions(Some(ExtensionsBuilder::new().add("x-enum-varnames", names.to_vec()).build()))
        .into()
}

/// `mfa_mode` of a location (PROTOCOL.md `location_mfa_mode`).
pub struct LocationMfaMode;

impl utoipa::PartialSchema for LocationMfaMode {
    fn schema() -> RefOr<Schema> {
        named(
            Type::Integer,
            &[1.into(), 2.into(), 3.into()],
            &["disabled", "internal", "external"],
            "Multi-factor authentication of a location: 1 = disabled, 2 = internal, 3 = external.",
        )
    }
}

impl utoipa::ToSchema for LocationMfaMode {
    fn name() -> Cow<'static, str> {
        "LocationMfaMode".into()
    }
}

/// The purpose of a token.
pub struct TokenKindName;

impl utoipa::PartialSchema for TokenKindName {
    fn schema() -> RefOr<Schema> {
        named(
            Type::String,
            &["enrollment".into(), "desktop_config".into(), "password_reset".into(), "network_device".into()],
            &["enrollment", "desktop_config", "password_reset", "network_device"],
            "What a token is for: `enrollment` (first enrollment of a user), `desktop_config` (add a desktop \
             client for an enrolled user), `password_reset`, `network_device` (enroll a headless network device).",
        )
    }
}

impl utoipa::ToSchema for TokenKindName {
    fn name() -> Cow<'static, str> {
        "TokenKind".into()
    }
}
