//! The exit codes of `onramp-client`, by name. The values are a documented contract (README
//! "The client: from provisioning.json to configured locations" and "Deploying to a fleet"):
//! installers and scripts test them, so a variant's number never changes.

/// What kind of outcome a run had, as scripts see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Done, or nothing to do (also: a machine joined to no directory).
    Success = 0,
    /// Any other error.
    Failed = 1,
    /// Wrong or missing arguments.
    Usage = 2,
    /// provisioning.json (or the machine-wide source) cannot be used.
    BadProvisioningFile = 3,
    /// The token was refused: expired, used, revoked or unknown.
    TokenProblem = 4,
    /// The edge could not be reached (after retries).
    EdgeUnreachable = 5,
    /// The Onramp client service is not running, or refused this user.
    ServiceUnavailable = 6,
    /// The user's account is disabled on the server.
    AccountDisabled = 7,
    /// The administrator removed this device; its locations were removed here too.
    DeviceRemoved = 8,
    /// provision: the directory (or Microsoft Graph) could not be reached.
    DirectoryUnreachable = 10,
    /// provision: the user or the attribute is missing or empty.
    AttributeMissing = 11,
    /// provision: the attribute's value is malformed.
    AttributeMalformed = 12,
    /// provision: the target cannot be written (or may not be written safely).
    NotWritable = 13,
    /// provision: the target exists and --force was not given.
    TargetExists = 14,
    /// provision: the directory refused the credentials or the permission.
    CredentialsRefused = 15,
}

impl Exit {
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e.code())
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::Exit;

    /// The documented values (README); changing one breaks installers.
    #[test]
    fn documented_values() {
        let all = [
            (Exit::Success, 0),
            (Exit::Failed, 1),
            (Exit::Usage, 2),
            (Exit::BadProvisioningFile, 3),
            (Exit::TokenProblem, 4),
            (Exit::EdgeUnreachable, 5),
            (Exit::ServiceUnavailable, 6),
            (Exit::AccountDisabled, 7),
            (Exit::DeviceRemoved, 8),
            (Exit::DirectoryUnreachable, 10),
            (Exit::AttributeMissing, 11),
            (Exit::AttributeMalformed, 12),
            (Exit::NotWritable, 13),
            (Exit::TargetExists, 14),
            (Exit::CredentialsRefused, 15),
        ];
        for (e, n) in all {
            assert_eq!(e.code(), n, "{e:?}");
        }
    }
}
