//! The pure parts of the Windows transport (the pipe's ACL, who a caller is), apart from the
//! Win32 calls so that they are tested on every platform.

use super::{Caller, Owner};

/// LocalSystem, which the service runs as.
pub const SYSTEM_SID: &str = "S-1-5-18";
/// BUILTIN\Administrators.
pub const ADMINISTRATORS_SID: &str = "S-1-5-32-544";
/// A named pipe's FILE_APPEND_DATA: the right to create another server instance of it.
pub const FILE_CREATE_PIPE_INSTANCE: u32 = 0x0000_0004;
const FILE_GENERIC_READ: u32 = 0x0012_0089;
const FILE_GENERIC_WRITE: u32 = 0x0012_0116;
/// What the allowed group may do with the pipe, and what the client asks for: read and write
/// without FILE_CREATE_PIPE_INSTANCE (part of GENERIC_WRITE). With it a group member could
/// open a second server instance of the name and be handed other users' connect requests,
/// which carry their private keys.
pub const PIPE_CLIENT_ACCESS: u32 = (FILE_GENERIC_READ | FILE_GENERIC_WRITE) & !FILE_CREATE_PIPE_INSTANCE;

/// `S-1-` and dash-separated decimal numbers: the only text put into the SDDL.
pub fn is_sid(s: &str) -> bool {
    let mut parts = s.split('-');
    parts.next() == Some("S")
        && parts.next() == Some("1")
        && s.split('-').count() >= 3
        && s.split('-').skip(2).all(|p| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The pipe's security descriptor in SDDL: a protected DACL (nothing inherited) granting
/// full access to SYSTEM and Administrators and [`PIPE_CLIENT_ACCESS`] to the allowed group;
/// anyone else matches no entry and is denied.
pub fn group_sddl(group_sid: Option<&str>) -> Result<String, String> {
    let mut sddl = format!("D:P(A;;GA;;;{SYSTEM_SID})(A;;GA;;;{ADMINISTRATORS_SID})");
    if let Some(sid) = group_sid {
        if !is_sid(sid) {
            return Err(format!("{sid:?} is not a SID"));
        }
        sddl.push_str(&format!("(A;;{PIPE_CLIENT_ACCESS:#x};;;{sid})"));
    }
    Ok(sddl)
}

/// A caller from its token's facts: its user SID and whether the token is SYSTEM's or an
/// elevated administrator's (a filtered UAC token is not: its Administrators entry is
/// deny-only). Tunnels are owned by the SID, as by the uid on Linux.
pub fn caller(user_sid: &str, administrator: bool) -> Result<Caller, String> {
    if !is_sid(user_sid) {
        return Err(format!("the caller's token holds {user_sid:?}, not a SID"));
    }
    let sid = user_sid.to_ascii_uppercase();
    // The relative id, the part that tells accounts of one machine apart: what `hello` shows
    // where Linux shows the uid.
    let uid = sid.rsplit('-').next().and_then(|r| r.parse::<u32>().ok()).unwrap_or(u32::MAX);
    let admin = administrator || sid == SYSTEM_SID;
    Ok(Caller { owner: Owner::new(sid.clone()), admin, uid, sid: Some(sid) })
}

/// Why a caller was refused, and what would let them in.
pub fn refusal(user: &str, group: Option<&str>) -> String {
    match group {
        Some(g) => format!(
            "{user} may not use the Onramp client service: only Administrators and members of the local group {g:?} \
             may; ask your administrator to add you (net localgroup \"{g}\" {user} /add, then sign out and in again)"
        ),
        None => format!(
            "{user} may not use the Onramp client service: it allows only Administrators; ask your administrator to \
             create the local group {0:?} (net localgroup \"{0}\" /add), add you to it and restart the service \
             (sc stop {1} and sc start {1})",
            crate::ipc::DEFAULT_GROUP,
            super::SERVICE_NAME,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sddl_grants_the_group_read_write_but_no_new_instance() {
        assert_eq!(group_sddl(None).unwrap(), "D:P(A;;GA;;;S-1-5-18)(A;;GA;;;S-1-5-32-544)");
        let sid = "S-1-5-21-1004336348-1177238915-682003330-1001";
        let sddl = group_sddl(Some(sid)).unwrap();
        assert_eq!(sddl, format!("D:P(A;;GA;;;S-1-5-18)(A;;GA;;;S-1-5-32-544)(A;;0x12019b;;;{sid})"));
        assert_eq!(PIPE_CLIENT_ACCESS & FILE_CREATE_PIPE_INSTANCE, 0);
        // FILE_READ_DATA, FILE_WRITE_DATA and SYNCHRONIZE: what reading and writing need.
        assert_eq!(PIPE_CLIENT_ACCESS & 0x0010_0003, 0x0010_0003);
        for bad in ["WD", "S-1-5-21-1)(A;;GA;;;WD", "", "S-1", "S-1-5-", "s-1-5-18x"] {
            assert!(group_sddl(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn callers_are_their_sid() {
        let c = caller("S-1-5-21-1004336348-1177238915-682003330-1001", false).unwrap();
        assert_eq!(c.owner, Owner::new("S-1-5-21-1004336348-1177238915-682003330-1001"));
        assert_eq!((c.uid, c.admin), (1001, false));
        assert_eq!(c.sid.as_deref(), Some("S-1-5-21-1004336348-1177238915-682003330-1001"));
        assert!(caller(SYSTEM_SID, false).unwrap().admin, "SYSTEM sees every tunnel");
        assert!(caller("S-1-5-21-1-2-3-500", true).unwrap().admin);
        // Two users of one machine own different tunnels.
        assert_ne!(
            caller("S-1-5-21-1-2-3-1001", false).unwrap().owner,
            caller("S-1-5-21-1-2-3-1002", false).unwrap().owner
        );
        assert!(caller("Everyone", false).is_err());
    }

    #[test]
    fn refusals_name_the_group() {
        assert!(refusal("ann", Some("Onramp Users")).contains("net localgroup \"Onramp Users\" ann /add"));
        assert!(refusal("ann", None).contains("only Administrators"));
    }
}
