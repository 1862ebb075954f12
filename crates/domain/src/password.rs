//! Password policy of PROTOCOL.md section 3: 8-128 characters with at least one lower-case
//! letter, upper-case letter, digit and special character.

/// Each rule a password can fail, with a message fit for live feedback in a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordRule {
    MinLength,
    MaxLength,
    Lowercase,
    Uppercase,
    Digit,
    Special,
}

impl PasswordRule {
    pub fn message(self) -> &'static str {
        match self {
            Self::MinLength => "at least 8 characters",
            Self::MaxLength => "at most 128 characters",
            Self::Lowercase => "a lower-case letter",
            Self::Uppercase => "an upper-case letter",
            Self::Digit => "a digit",
            Self::Special => "a special character",
        }
    }
}

/// The rules `password` breaks; empty means it is strong enough.
pub fn check(password: &str) -> Vec<PasswordRule> {
    let n = password.chars().count();
    let mut failed = Vec::new();
    if n < 8 {
        failed.push(PasswordRule::MinLength);
    }
    if n > 128 {
        failed.push(PasswordRule::MaxLength);
    }
    if !password.chars().any(char::is_lowercase) {
        failed.push(PasswordRule::Lowercase);
    }
    if !password.chars().any(char::is_uppercase) {
        failed.push(PasswordRule::Uppercase);
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        failed.push(PasswordRule::Digit);
    }
    if !password.chars().any(|c| !c.is_alphanumeric() && !c.is_whitespace()) {
        failed.push(PasswordRule::Special);
    }
    failed
}

/// One sentence listing what is missing, or `None` when the password passes.
pub fn explain(password: &str) -> Option<String> {
    let failed = check(password);
    if failed.is_empty() {
        return None;
    }
    let parts: Vec<&str> = failed.iter().map(|r| r.message()).collect();
    Some(format!("password not strong enough: needs {}", parts.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert!(check("Passw0rd!").is_empty());
        assert_eq!(check("short1!A"), vec![]);
        assert_eq!(check("Sh0rt!"), vec![PasswordRule::MinLength]);
        assert_eq!(check("password"), vec![PasswordRule::Uppercase, PasswordRule::Digit, PasswordRule::Special]);
        assert!(check(&format!("Aa1!{}", "x".repeat(125))).contains(&PasswordRule::MaxLength));
        assert!(explain("password").unwrap().starts_with("password not strong enough"));
    }

    proptest! {
        #[test]
        fn strong_passwords_pass(core in "[a-z]{2}[A-Z]{2}[0-9]{2}[!@#%]{2}[a-zA-Z0-9]{0,100}") {
            prop_assert!(check(&core).is_empty());
        }
    }
}
