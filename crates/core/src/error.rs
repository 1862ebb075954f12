use onramp_domain::token::TokenRejection;
use onramp_domain::ValidationError;
use onramp_store::StoreError;

/// A use-case failure. Each variant has a stable machine-readable code ([`CoreError::code`])
/// and a message fit to show the caller; internal details are logged, never returned.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// A well-formed request the current state refuses (e.g. enrolling an enrolled user).
    #[error("{message}")]
    Refused { code: &'static str, message: String },
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    #[error("{message}")]
    Conflict { field: &'static str, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("invalid token")]
    UnknownToken,
    #[error("{0}")]
    Token(TokenRejection),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type CoreResult<T> = Result<T, CoreError>;

impl CoreError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_input",
            Self::Refused { code, .. } => code,
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::UnknownToken => "invalid_token",
            Self::Token(TokenRejection::Expired) => "token_expired",
            Self::Token(TokenRejection::Used) => "token_used",
            Self::Token(TokenRejection::Revoked) => "token_revoked",
            Self::Token(TokenRejection::SessionEnded) => "session_expired",
            Self::Internal(_) => "internal",
        }
    }

    /// The input field at fault, when there is one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid(v) => Some(v.field),
            Self::Conflict { field, .. } => Some(field),
            _ => None,
        }
    }

    pub(crate) fn not_found(what: &'static str, key: impl ToString) -> Self {
        Self::NotFound { what, key: key.to_string() }
    }

    pub(crate) fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Self::Refused { code, message: message.into() }
    }

    /// Bad input at `field` (also for callers outside core, e.g. query parameters).
    pub fn invalid_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::invalid(field, message)
    }

    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(ValidationError::new(field, message))
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => Self::NotFound { what: "record", key: String::new() },
            StoreError::Conflict { key } => {
                Self::Conflict { field: key.field(), message: format!("{} already in use", key.field()) }
            }
            StoreError::SubnetFull { .. } => Self::refused(
                "subnet_full",
                "no free address left in a location subnet; ask the administrator to enlarge it",
            ),
            StoreError::AddressOutsideSubnets { device, address } => Self::refused(
                "address_in_use",
                format!(
                    "device {device:?} uses {address}, which the new addresses would not cover; delete or move it first"
                ),
            ),
            StoreError::DeviceLimit { max } => {
                Self::refused("device_limit", format!("the user already has {max} devices, the most allowed"))
            }
            other => Self::Internal(other.to_string()),
        }
    }
}

/// Maps a store result, naming the missing thing on `NotFound`.
pub(crate) trait OrNotFound<T> {
    fn or_not_found(self, what: &'static str, key: &str) -> CoreResult<T>;
}

impl<T> OrNotFound<T> for Result<T, StoreError> {
    fn or_not_found(self, what: &'static str, key: &str) -> CoreResult<T> {
        self.map_err(|e| match e {
            StoreError::NotFound => CoreError::not_found(what, key),
            other => other.into(),
        })
    }
}
