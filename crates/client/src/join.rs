//! Which directory this machine is joined to (PROTOCOL.md 1.4): domain-joined -> AD flow,
//! Entra-joined -> Entra flow, hybrid (both) -> AD flow, none -> nothing to do.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Join {
    Domain,
    Entra,
    Hybrid,
    None,
}

/// Reads `dsregcmd /status` output ("AzureAdJoined : YES", "DomainJoined : YES").
pub fn parse_dsregcmd(text: &str) -> Join {
    let yes = |key: &str| {
        text.lines().any(|l| {
            let mut parts = l.splitn(2, ':');
            let k = parts.next().unwrap_or("").trim();
            let v = parts.next().unwrap_or("").trim();
            k.eq_ignore_ascii_case(key) && v.eq_ignore_ascii_case("YES")
        })
    };
    match (yes("DomainJoined"), yes("AzureAdJoined")) {
        (true, true) => Join::Hybrid,
        (true, false) => Join::Domain,
        (false, true) => Join::Entra,
        (false, false) => Join::None,
    }
}

/// This machine's join state. Only Windows joins machines to AD or Entra ID; elsewhere a
/// directory is used only when configured explicitly.
pub fn detect() -> Join {
    #[cfg(windows)]
    {
        match std::process::Command::new("dsregcmd").arg("/status").output() {
            Ok(out) if out.status.success() => parse_dsregcmd(&String::from_utf8_lossy(&out.stdout)),
            // dsregcmd is missing on old or stripped systems: the logon domain still tells AD.
            _ if std::env::var_os("USERDNSDOMAIN").is_some() => Join::Domain,
            _ => Join::None,
        }
    }
    #[cfg(not(windows))]
    {
        Join::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "
+----------------------------------------------------------------------+
| Device State                                                         |
+----------------------------------------------------------------------+

             AzureAdJoined : {entra}
          EnterpriseJoined : NO
              DomainJoined : {domain}
                DomainName : CONTOSO
";

    #[test]
    fn join_states() {
        let s = |e: &str, d: &str| parse_dsregcmd(&STATUS.replace("{entra}", e).replace("{domain}", d));
        assert_eq!(s("YES", "YES"), Join::Hybrid);
        assert_eq!(s("NO", "YES"), Join::Domain);
        assert_eq!(s("YES", "NO"), Join::Entra);
        assert_eq!(s("NO", "NO"), Join::None);
        assert_eq!(parse_dsregcmd(""), Join::None);
    }
}
