//! Directory sync, the pure part: what a directory read says (a [`Snapshot`]), what Onramp
//! holds ([`Known`]), and the changes that make Onramp match the directory ([`plan`]).
//!
//! The rules, for every source (LDAP / Active Directory, Entra ID):
//! - The directory is authoritative for the users it created (`from_directory`): their
//!   names, e-mail and phone follow it, and they are disabled when they leave the synced
//!   groups or are disabled there. A user created in Onramp is never touched: a directory
//!   entry with the same username is reported as a conflict until an admin links the two.
//! - Only the synced groups' memberships of directory users are managed: an admin may still
//!   put a directory user in an Onramp-only group (admins, say), and the sync leaves it.
//! - The sync re-enables only users it disabled itself: an admin's "disable" holds.
//! - Devices are never deleted; a disabled user's tunnels stop because their peers go.
//! - No change may leave the instance without an active admin.

use crate::validate::{parse_name, parse_phone, Email, Username};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// A person as the directory has them, with attributes already picked out (raw: validation
/// happens in [`plan`], so a bad entry is reported instead of failing the read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirUser {
    /// The login (`uid`, `sAMAccountName`, the UPN's local part for Entra).
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Display name (`cn`), a fallback for a missing first or last name.
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// Disabled in the directory (AD `userAccountControl` bit 2, Entra `accountEnabled`).
    pub disabled: bool,
    /// The synced groups this user is in, directly or through nested groups.
    pub groups: BTreeSet<String>,
    /// Where the provisioning attribute is written (an LDAP DN, an Entra object id).
    pub locator: String,
    /// The provisioning attribute's current value, when it was asked for and is set.
    pub attribute: Option<String>,
}

/// One complete read of the directory. A partial read is an error, never a snapshot:
/// users missing from a snapshot get disabled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub users: Vec<DirUser>,
    /// The synced groups the directory has (those configured but absent are not created).
    pub groups: BTreeSet<String>,
}

/// A user as Onramp holds them, for the comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownUser {
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub is_active: bool,
    pub enrolled: bool,
    /// Created (or linked) by a directory sync: the directory is authoritative.
    pub from_directory: bool,
    /// Disabled by the sync (so the sync may enable them again).
    pub disabled_by_directory: bool,
    /// Every group the user is in (synced or not).
    pub groups: BTreeSet<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub users: Vec<KnownUser>,
    pub groups: BTreeSet<String>,
    /// The admin groups: the plan never leaves no active member in all of them.
    pub admin_groups: BTreeSet<String>,
}

/// A user to create, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDirUser {
    pub username: String,
    pub first_name: String,
    pub last_name: String,
    pub email: String,
    pub phone: Option<String>,
    pub locator: String,
}

/// New values of a directory user's profile (only the fields that change are `Some`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileChange {
    pub username: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    /// `Some(None)` clears the phone.
    pub phone: Option<Option<String>>,
}

impl ProfileChange {
    /// The names of the changed fields (for the report and the audit log).
    pub fn fields(&self) -> Vec<&'static str> {
        let mut f = Vec::new();
        if self.first_name.is_some() {
            f.push("first_name");
        }
        if self.last_name.is_some() {
            f.push("last_name");
        }
        if self.email.is_some() {
            f.push("email");
        }
        if self.phone.is_some() {
            f.push("phone");
        }
        f
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DisableReason {
    /// Disabled in the directory itself.
    DisabledInDirectory,
    /// No longer in the directory, or in none of the synced groups.
    NotInDirectory,
}

impl DisableReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DisabledInDirectory => "disabled in the directory",
            Self::NotInDirectory => "no longer in the directory's synced groups",
        }
    }
}

/// An entry the sync will not apply, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Conflict {
    pub username: String,
    pub reason: String,
}

/// The changes of one sync, in the order they are applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub create_groups: Vec<String>,
    pub create_users: Vec<NewDirUser>,
    pub update_profiles: Vec<ProfileChange>,
    pub enable: Vec<String>,
    pub disable: Vec<(String, DisableReason)>,
    /// (group, username)
    pub add_members: Vec<(String, String)>,
    pub remove_members: Vec<(String, String)>,
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    /// Nothing to write (conflicts are only reported).
    pub fn is_empty(&self) -> bool {
        self.create_groups.is_empty()
            && self.create_users.is_empty()
            && self.update_profiles.is_empty()
            && self.enable.is_empty()
            && self.disable.is_empty()
            && self.add_members.is_empty()
            && self.remove_members.is_empty()
    }
}

/// The profile a directory entry maps to, or why it cannot be an Onramp user.
pub fn profile_of(u: &DirUser) -> Result<NewDirUser, String> {
    let username = Username::parse("username", &u.username.trim().to_lowercase())
        .map_err(|e| format!("{:?} cannot be an Onramp username: {}", u.username, e.message))?
        .into_inner();
    let present = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
    // A missing first name falls back on the display name, then the login; a missing last
    // name on the display name's last word (service accounts often have neither).
    let display = present(&u.display_name);
    let first = present(&u.first_name).or_else(|| display.clone()).unwrap_or_else(|| username.clone());
    let last = present(&u.last_name)
        .or_else(|| display.as_deref().and_then(|d| d.split_whitespace().last()).map(str::to_owned))
        .unwrap_or_else(|| username.clone());
    let first_name = parse_name("first_name", &first, 128).map_err(|e| format!("first name: {}", e.message))?;
    let last_name = parse_name("last_name", &last, 128).map_err(|e| format!("last name: {}", e.message))?;
    let email = present(&u.email).ok_or_else(|| "has no e-mail address in the directory".to_owned())?;
    let email = Email::parse("email", &email).map_err(|e| e.message)?.into_inner();
    let phone = match present(&u.phone) {
        Some(p) => Some(parse_phone("phone", &p).map_err(|e| format!("phone: {}", e.message))?),
        None => None,
    };
    Ok(NewDirUser { username, first_name, last_name, email, phone, locator: u.locator.clone() })
}

/// The changes that make `known` match `snapshot` for the groups in `synced` (the
/// configured group names; empty = no group is synced and every user the read returned is
/// in scope). See the module comment for the rules.
pub fn plan(snapshot: &Snapshot, known: &Known) -> Plan {
    let mut p = Plan::default();
    let by_name: HashMap<&str, &KnownUser> = known.users.iter().map(|u| (u.username.as_str(), u)).collect();
    // E-mail addresses in use, by whom: a directory entry may not take another user's.
    let mut email_owner: HashMap<String, String> =
        known.users.iter().map(|u| (u.email.to_lowercase(), u.username.clone())).collect();
    let synced_groups = &snapshot.groups;
    for g in synced_groups {
        if !known.groups.contains(g) {
            p.create_groups.push(g.clone());
        }
    }
    let mut seen: HashSet<String> = HashSet::new();
    // Sorted, so that which of two clashing entries wins does not depend on the read order.
    let mut entries: Vec<&DirUser> = snapshot.users.iter().collect();
    entries.sort_by(|a, b| a.username.cmp(&b.username).then(a.locator.cmp(&b.locator)));
    let mut valid: Vec<(&DirUser, NewDirUser)> = Vec::new();
    for d in entries {
        match profile_of(d) {
            Ok(profile) if seen.insert(profile.username.clone()) => valid.push((d, profile)),
            Ok(profile) => p.conflicts.push(Conflict {
                username: profile.username,
                reason: "two directory entries have this username; the first was synced".into(),
            }),
            Err(reason) => p.conflicts.push(Conflict { username: d.username.clone(), reason }),
        }
    }
    // Pass 1: the users Onramp has. E-mail changes go first, in an order that frees an
    // address before another user takes it (one user's new address may be another's old
    // one); what is left taken after that is a conflict.
    let mut changes: Vec<ProfileChange> = Vec::new();
    let mut moves: Vec<(usize, String, String)> = Vec::new(); // (change index, old, new)
    let mut new_entries: Vec<(&DirUser, NewDirUser)> = Vec::new();
    for (d, profile) in valid {
        let wanted_groups: BTreeSet<&String> = d.groups.iter().filter(|g| synced_groups.contains(*g)).collect();
        let Some(k) = by_name.get(profile.username.as_str()) else {
            new_entries.push((d, profile));
            continue;
        };
        if !k.from_directory {
            p.conflicts.push(Conflict {
                username: profile.username.clone(),
                reason: format!(
                    "a user created in Onramp has this username; the directory does not change it \
                     unless an admin links it (onramp admin directory link {})",
                    profile.username
                ),
            });
            continue;
        }
        let mut change = ProfileChange { username: k.username.clone(), ..Default::default() };
        if k.first_name != profile.first_name {
            change.first_name = Some(profile.first_name.clone());
        }
        if k.last_name != profile.last_name {
            change.last_name = Some(profile.last_name.clone());
        }
        if k.phone != profile.phone {
            change.phone = Some(profile.phone.clone());
        }
        if k.email != profile.email {
            moves.push((changes.len(), k.email.clone(), profile.email.clone()));
        }
        changes.push(change);
        if d.disabled && k.is_active {
            p.disable.push((k.username.clone(), DisableReason::DisabledInDirectory));
        } else if !d.disabled && !k.is_active && k.disabled_by_directory {
            p.enable.push(k.username.clone());
        }
        for g in &wanted_groups {
            if !k.groups.contains(*g) {
                p.add_members.push(((*g).clone(), k.username.clone()));
            }
        }
        for g in k.groups.iter().filter(|g| synced_groups.contains(*g) && !wanted_groups.contains(g)) {
            p.remove_members.push((g.clone(), k.username.clone()));
        }
    }
    // Resolve the e-mail moves to a fixpoint: each round applies the moves whose new
    // address is free, which frees their old ones for the next round.
    let mut ordered: Vec<usize> = Vec::new();
    loop {
        let mut progressed = false;
        moves.retain(|(i, old, new)| {
            let username = &changes[*i].username;
            let free = email_owner.get(&new.to_lowercase()).is_none_or(|o| o == username);
            if free {
                if email_owner.get(&old.to_lowercase()) == Some(username) {
                    email_owner.remove(&old.to_lowercase());
                }
                email_owner.insert(new.to_lowercase(), username.clone());
                changes[*i].email = Some(new.clone());
                ordered.push(*i);
                progressed = true;
            }
            !free
        });
        if !progressed {
            break;
        }
    }
    for (i, old, new) in moves {
        let owner = email_owner.get(&new.to_lowercase()).cloned().unwrap_or_default();
        p.conflicts.push(Conflict {
            username: changes[i].username.clone(),
            reason: format!("the new e-mail address {new} belongs to user {owner}; kept {old}"),
        });
    }
    // The e-mail moves in their order, then the other profile changes.
    let moved: HashSet<usize> = ordered.iter().copied().collect();
    for i in ordered.iter().copied().chain((0..changes.len()).filter(|i| !moved.contains(i))) {
        if !changes[i].fields().is_empty() {
            p.update_profiles.push(std::mem::take(&mut changes[i]));
        }
    }
    // Pass 2: new users, once the moves above have freed what they free.
    for (d, profile) in new_entries {
        if d.disabled {
            continue; // nobody to create: an account disabled before it ever came
        }
        let email_key = profile.email.to_lowercase();
        if let Some(owner) = email_owner.get(&email_key) {
            p.conflicts.push(Conflict {
                username: profile.username.clone(),
                reason: format!("the e-mail address {} belongs to user {owner}", profile.email),
            });
            continue;
        }
        email_owner.insert(email_key, profile.username.clone());
        for g in d.groups.iter().filter(|g| synced_groups.contains(*g)) {
            p.add_members.push((g.clone(), profile.username.clone()));
        }
        p.create_users.push(profile);
    }
    // Directory users the read no longer returns.
    for k in known.users.iter().filter(|k| k.from_directory && !seen.contains(&k.username)) {
        if k.is_active {
            p.disable.push((k.username.clone(), DisableReason::NotInDirectory));
        }
        for g in k.groups.iter().filter(|g| synced_groups.contains(*g)) {
            p.remove_members.push((g.clone(), k.username.clone()));
        }
    }
    keep_an_admin(&mut p, known);
    p.conflicts.sort();
    p
}

/// Drops the disables and admin-group removals that would leave no active admin, reporting
/// them as conflicts (the store refuses such a write anyway; this keeps the rest of the sync).
fn keep_an_admin(p: &mut Plan, known: &Known) {
    let admins_before: BTreeSet<&str> = known
        .users
        .iter()
        .filter(|u| u.is_active && u.groups.iter().any(|g| known.admin_groups.contains(g)))
        .map(|u| u.username.as_str())
        .collect();
    if admins_before.is_empty() {
        return; // nothing to keep (a fresh instance, or one the CLI recovers)
    }
    let disabled: HashSet<&str> = p.disable.iter().map(|(u, _)| u.as_str()).collect();
    let mut removed: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (g, u) in &p.remove_members {
        removed.entry(u.as_str()).or_default().insert(g.as_str());
    }
    let still_admin = |u: &KnownUser| {
        !disabled.contains(u.username.as_str())
            && u.groups.iter().any(|g| {
                known.admin_groups.contains(g)
                    && !removed.get(u.username.as_str()).is_some_and(|r| r.contains(g.as_str()))
            })
    };
    let enabled: HashSet<&str> = p.enable.iter().map(String::as_str).collect();
    let enabled_admins =
        known.users.iter().filter(|u| (u.is_active || enabled.contains(u.username.as_str())) && still_admin(u)).count()
            + usize::from(added_an_admin(p, known));
    if enabled_admins > 0 {
        return;
    }
    let losing: HashSet<String> = admins_before.iter().map(|s| (*s).to_owned()).collect();
    p.disable.retain(|(u, _)| {
        let keep = !losing.contains(u);
        if !keep {
            p.conflicts.push(Conflict {
                username: u.clone(),
                reason: "not disabled: it would leave no active admin; make another user an admin first".into(),
            });
        }
        keep
    });
    p.remove_members.retain(|(g, u)| {
        let keep = !(losing.contains(u) && known.admin_groups.contains(g));
        if !keep {
            p.conflicts.push(Conflict {
                username: u.clone(),
                reason: format!(
                    "left in {g}: removing them would leave no active admin; make another user an admin first"
                ),
            });
        }
        keep
    });
}

/// Whether the plan puts an active (or newly created) user into an admin group.
fn added_an_admin(p: &Plan, known: &Known) -> bool {
    let disabled: HashSet<&str> = p.disable.iter().map(|(u, _)| u.as_str()).collect();
    let active: HashSet<&str> = known
        .users
        .iter()
        .filter(|u| u.is_active || p.enable.contains(&u.username))
        .map(|u| u.username.as_str())
        .collect();
    let created: HashSet<&str> = p.create_users.iter().map(|u| u.username.as_str()).collect();
    p.add_members.iter().any(|(g, u)| {
        known.admin_groups.contains(g)
            && !disabled.contains(u.as_str())
            && (active.contains(u.as_str()) || created.contains(u.as_str()))
    })
}

/// What to do with one user's provisioning attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeAction {
    /// It holds a live token with time to spare (or is empty for a user who needs none).
    Keep,
    /// Issue a token and write it: the attribute is empty, holds a dead token, or one that
    /// expires within the refresh margin.
    Refresh,
    /// Clear it: the user has enrolled or is disabled.
    Clear,
}

/// The attribute rule of "keep provisioning attributes fresh". `token_expires_at` is the
/// expiry of the live enrollment token of this user that the attribute holds (`None`: no
/// value, or a value holding no live token of theirs).
pub fn attribute_action(
    active: bool,
    enrolled: bool,
    has_value: bool,
    token_expires_at: Option<i64>,
    now: i64,
    margin_secs: i64,
) -> AttributeAction {
    if !active || enrolled {
        return if has_value { AttributeAction::Clear } else { AttributeAction::Keep };
    }
    match token_expires_at {
        Some(exp) if exp - now > margin_secs => AttributeAction::Keep,
        _ => AttributeAction::Refresh,
    }
}

/// How long before its expiry a token in an attribute is replaced: a quarter of its
/// lifetime, and at least two sync intervals (so a missed run does not let it lapse).
pub fn refresh_margin(token_lifetime_secs: i64, interval_secs: i64) -> i64 {
    (token_lifetime_secs / 4).max(2 * interval_secs).min(token_lifetime_secs - 60).max(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dir(name: &str, groups: &[&str]) -> DirUser {
        DirUser {
            username: name.into(),
            first_name: Some(format!("F{name}")),
            last_name: Some("Last".into()),
            display_name: None,
            email: Some(format!("{name}@example.com")),
            phone: None,
            disabled: false,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            locator: format!("uid={name},ou=people"),
            attribute: None,
        }
    }

    fn known_from(d: &DirUser, from_directory: bool) -> KnownUser {
        let p = profile_of(d).unwrap();
        KnownUser {
            username: p.username,
            first_name: p.first_name,
            last_name: p.last_name,
            email: p.email,
            phone: p.phone,
            is_active: true,
            enrolled: false,
            from_directory,
            disabled_by_directory: false,
            groups: d.groups.clone(),
        }
    }

    fn snap(users: Vec<DirUser>, groups: &[&str]) -> Snapshot {
        Snapshot { users, groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    /// The model of applying a plan, as the store does it.
    fn apply(known: &Known, p: &Plan) -> Known {
        let mut k = known.clone();
        k.groups.extend(p.create_groups.iter().cloned());
        for n in &p.create_users {
            k.users.push(KnownUser {
                username: n.username.clone(),
                first_name: n.first_name.clone(),
                last_name: n.last_name.clone(),
                email: n.email.clone(),
                phone: n.phone.clone(),
                is_active: true,
                enrolled: false,
                from_directory: true,
                disabled_by_directory: false,
                groups: BTreeSet::new(),
            });
        }
        for u in &mut k.users {
            if let Some(c) = p.update_profiles.iter().find(|c| c.username == u.username) {
                u.first_name = c.first_name.clone().unwrap_or(u.first_name.clone());
                u.last_name = c.last_name.clone().unwrap_or(u.last_name.clone());
                u.email = c.email.clone().unwrap_or(u.email.clone());
                if let Some(ph) = &c.phone {
                    u.phone = ph.clone();
                }
            }
            if p.enable.contains(&u.username) {
                u.is_active = true;
                u.disabled_by_directory = false;
            }
            if p.disable.iter().any(|(n, _)| n == &u.username) {
                u.is_active = false;
                u.disabled_by_directory = true;
            }
            for (g, n) in &p.add_members {
                if n == &u.username {
                    u.groups.insert(g.clone());
                }
            }
            for (g, n) in &p.remove_members {
                if n == &u.username {
                    u.groups.remove(g);
                }
            }
        }
        k
    }

    #[test]
    fn a_new_entry_is_created_with_its_groups() {
        let s = snap(vec![dir("ann", &["staff"])], &["staff"]);
        let p = plan(&s, &Known::default());
        assert_eq!(p.create_groups, ["staff"]);
        assert_eq!(p.create_users.len(), 1);
        assert_eq!(p.add_members, [("staff".to_string(), "ann".to_string())]);
        assert!(plan(&s, &apply(&Known::default(), &p)).is_empty());
    }

    #[test]
    fn usernames_are_lower_case_and_bad_entries_are_reported() {
        let mut bob = dir("Bob", &["staff"]);
        bob.email = None;
        let mut eve = dir("eve smith", &["staff"]);
        eve.username = "eve smith".into();
        let p = plan(&snap(vec![dir("ANN", &["staff"]), bob, eve], &["staff"]), &Known::default());
        assert_eq!(p.create_users.iter().map(|u| u.username.as_str()).collect::<Vec<_>>(), ["ann"]);
        assert_eq!(p.conflicts.len(), 2, "{:?}", p.conflicts);
        assert!(p.conflicts.iter().any(|c| c.username == "Bob" && c.reason.contains("no e-mail")));
        assert!(p.conflicts.iter().any(|c| c.reason.contains("cannot be an Onramp username")));
    }

    #[test]
    fn a_local_user_is_never_overwritten() {
        let mut d = dir("ann", &["staff"]);
        let local = known_from(&d, false);
        d.first_name = Some("Other".into());
        d.disabled = true;
        let k = Known { users: vec![local], groups: ["staff".into()].into(), ..Default::default() };
        let p = plan(&snap(vec![d], &["staff"]), &k);
        assert!(p.is_empty(), "{p:?}");
        assert!(p.conflicts[0].reason.contains("onramp admin directory link ann"));
    }

    #[test]
    fn leavers_and_directory_disabled_users_are_disabled_and_only_those_come_back() {
        let ann = dir("ann", &["staff"]);
        let mut bob = dir("bob", &["staff"]);
        let mut k = Known {
            users: vec![known_from(&ann, true), known_from(&bob, true)],
            groups: ["staff".into()].into(),
            ..Default::default()
        };
        bob.disabled = true;
        let p = plan(&snap(vec![bob.clone()], &["staff"]), &k);
        assert_eq!(
            p.disable,
            [
                ("bob".to_string(), DisableReason::DisabledInDirectory),
                ("ann".to_string(), DisableReason::NotInDirectory)
            ]
        );
        assert_eq!(p.remove_members, [("staff".to_string(), "ann".to_string())]);
        k = apply(&k, &p);
        // Bob is enabled again in the directory: the sync enables him.
        bob.disabled = false;
        let p = plan(&snap(vec![bob.clone()], &["staff"]), &k);
        assert_eq!(p.enable, ["bob"]);
        // An admin's own disable is not undone.
        let mut k2 = apply(&k, &p);
        k2.users.iter_mut().find(|u| u.username == "bob").unwrap().is_active = false;
        assert!(plan(&snap(vec![bob], &["staff"]), &k2).is_empty());
    }

    #[test]
    fn the_last_admin_is_never_disabled() {
        let root = dir("root", &["admins"]);
        let k = Known {
            users: vec![known_from(&root, true)],
            groups: ["admins".into()].into(),
            admin_groups: ["admins".into()].into(),
        };
        let p = plan(&snap(vec![], &["admins"]), &k);
        assert!(p.disable.is_empty() && p.remove_members.is_empty(), "{p:?}");
        assert!(p.conflicts[0].reason.contains("no active admin"));
        // With another admin coming in, the leaver may go.
        let p = plan(&snap(vec![dir("new", &["admins"])], &["admins"]), &k);
        assert_eq!(p.disable.len(), 1);
    }

    #[test]
    fn an_email_belonging_to_someone_else_is_a_conflict() {
        let local = known_from(&dir("ann", &[]), false);
        let mut d = dir("bob", &["staff"]);
        d.email = Some("ANN@example.com".into());
        let p = plan(&snap(vec![d], &["staff"]), &Known { users: vec![local], ..Default::default() });
        assert!(p.create_users.is_empty());
        assert!(p.conflicts[0].reason.contains("belongs to user ann"));
    }

    #[test]
    fn an_address_freed_by_one_user_is_taken_by_another_in_the_same_sync() {
        // d moves from a@ to b@, e from b@ to c@, and the new user a takes a@: one order works.
        let mut d = dir("d", &[]);
        let mut e = dir("e", &[]);
        d.email = Some("a@example.com".into());
        e.email = Some("b@example.com".into());
        let k = Known { users: vec![known_from(&d, true), known_from(&e, true)], ..Default::default() };
        d.email = Some("b@example.com".into());
        e.email = Some("c@example.com".into());
        let s = snap(vec![dir("a", &[]), d, e], &[]);
        let p = plan(&s, &k);
        assert!(p.conflicts.is_empty(), "{:?}", p.conflicts);
        let order: Vec<&str> = p.update_profiles.iter().map(|c| c.username.as_str()).collect();
        assert_eq!(order, ["e", "d"], "e frees b@ before d takes it");
        assert_eq!(p.create_users.len(), 1);
        assert!(plan(&s, &apply(&k, &p)).is_empty());
    }

    #[test]
    fn attribute_rules() {
        use AttributeAction::*;
        let margin = refresh_margin(86_400, 300);
        assert_eq!(margin, 21_600);
        assert_eq!(attribute_action(true, false, false, None, 0, margin), Refresh);
        assert_eq!(attribute_action(true, false, true, Some(86_000), 0, margin), Keep);
        assert_eq!(attribute_action(true, false, true, Some(3600), 0, margin), Refresh);
        assert_eq!(attribute_action(true, true, true, None, 0, margin), Clear);
        assert_eq!(attribute_action(false, false, true, Some(86_000), 0, margin), Clear);
        assert_eq!(attribute_action(true, true, false, None, 0, margin), Keep);
        // A short lifetime still leaves the token a minute of use.
        assert_eq!(refresh_margin(120, 300), 60);
    }

    fn arb_dir() -> impl Strategy<Value = DirUser> {
        (
            "[a-d]{1,2}",
            prop::option::of("[A-Z][a-z]{0,5}"),
            prop::option::of("[a-c]{1,2}@example\\.com"),
            any::<bool>(),
            prop::collection::btree_set("g[0-2]", 0..3),
        )
            .prop_map(|(name, first, email, disabled, groups)| DirUser {
                username: name.clone(),
                first_name: first,
                last_name: Some("L".into()),
                display_name: None,
                email,
                phone: None,
                disabled,
                groups,
                locator: format!("uid={name}"),
                attribute: None,
            })
    }

    fn arb_known() -> impl Strategy<Value = Known> {
        prop::collection::vec(
            (
                arb_dir(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                prop::collection::btree_set("g[0-3]|admins", 0..3),
            ),
            0..6,
        )
        .prop_map(|rows| {
            let mut users: Vec<KnownUser> = Vec::new();
            for (d, from_directory, active, by_dir, groups) in rows {
                let Ok(p) = profile_of(&d) else { continue };
                if users.iter().any(|u| u.username == p.username || u.email == p.email) {
                    continue;
                }
                users.push(KnownUser {
                    username: p.username,
                    first_name: p.first_name,
                    last_name: p.last_name,
                    email: p.email,
                    phone: None,
                    is_active: active,
                    enrolled: false,
                    from_directory,
                    disabled_by_directory: by_dir && !active,
                    groups,
                });
            }
            Known {
                users,
                groups: ["g0", "admins"].iter().map(|s| s.to_string()).collect(),
                admin_groups: ["admins".to_string()].into(),
            }
        })
    }

    proptest! {
        /// A second sync right after the first has nothing to do, local users are never
        /// changed, and every valid, enabled entry ends up as an active directory user
        /// with exactly the directory's synced groups.
        #[test]
        fn plans_converge_and_spare_local_users(
            users in prop::collection::vec(arb_dir(), 0..8),
            synced in prop::collection::btree_set("g[0-2]|admins", 0..3),
            known in arb_known(),
        ) {
            let s = Snapshot { users, groups: synced.clone() };
            let p = plan(&s, &known);
            let after = apply(&known, &p);
            let again = plan(&s, &after);
            prop_assert!(again.is_empty(), "second plan: {:?}", again);
            for before in known.users.iter().filter(|u| !u.from_directory) {
                let now = after.users.iter().find(|u| u.username == before.username).unwrap();
                prop_assert_eq!(before, now);
            }
            let emails: HashSet<String> = after.users.iter().map(|u| u.email.to_lowercase()).collect();
            prop_assert_eq!(emails.len(), after.users.len(), "an e-mail address is used twice");
            let had_admin = known.users.iter().any(|u| u.is_active && u.groups.contains("admins"));
            if had_admin {
                prop_assert!(after.users.iter().any(|u| u.is_active && u.groups.contains("admins")));
            }
            let conflicted: HashSet<&str> = p.conflicts.iter().map(|c| c.username.as_str()).collect();
            for d in &s.users {
                let Ok(prof) = profile_of(d) else { continue };
                if conflicted.contains(prof.username.as_str()) || conflicted.contains(d.username.as_str()) {
                    continue;
                }
                let Some(u) = after.users.iter().find(|u| u.username == prof.username) else {
                    prop_assert!(d.disabled, "{} missing", prof.username);
                    continue;
                };
                if !u.from_directory { continue; }
                let dup = s.users.iter().filter(|o| profile_of(o).is_ok_and(|q| q.username == prof.username)).count() > 1;
                if dup { continue; }
                let want: BTreeSet<String> = d.groups.intersection(&synced).cloned().collect();
                let have: BTreeSet<String> = u.groups.intersection(&synced).cloned().collect();
                prop_assert_eq!(want, have);
                if !d.disabled && (u.disabled_by_directory || known.users.iter().all(|k| k.username != u.username)) {
                    prop_assert!(u.is_active);
                }
            }
        }
    }
}
