//! What the client asks on the terminal: the enrollment token, the new password, and the
//! enrollment session's welcome.

use crate::output::say;
use onramp_client::enroll::{self, Interaction};
use onramp_proto::EnrollmentStartResponse;
use std::io::IsTerminal;
use std::path::PathBuf;

/// Reads one line (the token) from standard input, asking when it is a terminal.
pub fn read_token() -> std::io::Result<String> {
    if std::io::stdin().is_terminal() {
        eprint!("Enrollment token: ");
    }
    let mut s = String::new();
    std::io::stdin().read_line(&mut s)?;
    Ok(s)
}

/// The enrollment's [`Interaction`] on a terminal (or from --password-file).
pub struct Terminal {
    pub password_file: Option<PathBuf>,
    /// The administrator named by the session, for messages after a failure.
    pub admin: Option<String>,
}

impl Interaction for Terminal {
    fn show_start(&mut self, s: &EnrollmentStartResponse) {
        let u = &s.user;
        say(&format!("Welcome to {}, {} {}", s.instance.name, u.first_name, u.last_name));
        say(&format!(
            "  login: {}   e-mail: {}{}",
            u.login,
            u.email,
            u.phone_number.as_deref().map(|p| format!("   phone: {p}")).unwrap_or_default()
        ));
        self.admin = enroll::admin_contact(s);
        if let Some(a) = &self.admin {
            say(&format!("  questions? your administrator: {a}"));
        }
        let left = s.deadline_timestamp - onramp_client::now();
        say(&format!("  this enrollment session ends in {} min {} s", left.max(0) / 60, left.max(0) % 60));
    }

    fn found(&mut self, source: &onramp_client::provision::Found, url: &url::Url) {
        say(&format!("Found {source}; enrolling at {url}"));
    }

    fn password(&mut self) -> Result<String, String> {
        if let Some(f) = &self.password_file {
            let p = std::fs::read_to_string(f).map_err(|e| format!("{}: cannot be read: {e}", f.display()))?;
            let p = p.trim_end_matches(['\r', '\n']).to_owned();
            if let Some(why) = onramp_domain::password::explain(&p) {
                return Err(format!("{}: {why}", f.display()));
            }
            return Ok(p);
        }
        if !std::io::stdin().is_terminal() {
            return Err("a new password is needed and there is no terminal to ask on; use --password-file FILE".into());
        }
        say("Choose your password: 8-128 characters with a lower-case and an upper-case letter, a digit and a special character.");
        loop {
            let p =
                rpassword::prompt_password("New password: ").map_err(|e| format!("cannot read the password: {e}"))?;
            if let Some(why) = onramp_domain::password::explain(&p) {
                say(&format!("  {why}"));
                continue;
            }
            let again =
                rpassword::prompt_password("Repeat it: ").map_err(|e| format!("cannot read the password: {e}"))?;
            if again != p {
                say("  the two entries differ; once more");
                continue;
            }
            return Ok(p);
        }
    }
}
