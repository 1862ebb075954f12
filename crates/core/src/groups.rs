use crate::error::OrNotFound;
use crate::users::last_admin;
use crate::{Actor, Core, CoreError, CoreResult};
use onramp_domain::validate::parse_name;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupInput {
    pub name: String,
    #[serde(default)]
    pub is_admin: bool,
    /// Initial members (usernames).
    #[serde(default)]
    pub members: Vec<String>,
}

/// PROTOCOL.md section 4 shape: `{name, members, vpn_locations, is_admin}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct GroupInfo {
    pub id: i64,
    pub name: String,
    pub members: Vec<String>,
    pub vpn_locations: Vec<String>,
    pub is_admin: bool,
}

pub const ADMIN_GROUP: &str = "admin";

impl Core {
    pub async fn create_group(&self, actor: &Actor, input: GroupInput) -> CoreResult<GroupInfo> {
        let name = parse_name("name", &input.name, 64)?;
        // Resolve members first so that an unknown username writes nothing.
        let mut member_ids = Vec::new();
        for m in &input.members {
            member_ids.push(self.user_row(m).await?.id);
        }
        let g = self.store().create_group(&name, input.is_admin, self.now()).await.map_err(|e| match e {
            onramp_store::StoreError::Conflict { key: onramp_store::UniqueKey::GroupName } => {
                CoreError::Conflict { field: "name", message: format!("group {name:?} already exists") }
            }
            other => other.into(),
        })?;
        for id in member_ids {
            self.store().add_member(g.id, id).await?;
        }
        self.audit(actor, "group.created", Some(name.clone()), serde_json::json!({"is_admin": input.is_admin})).await;
        self.get_group(&name).await
    }

    pub async fn get_group(&self, name: &str) -> CoreResult<GroupInfo> {
        let g = self.store().group_by_name(name).await.or_not_found("group", name)?;
        self.group_info(g).await
    }

    async fn group_info(&self, g: onramp_store::GroupRow) -> CoreResult<GroupInfo> {
        let mut infos = self.group_infos(vec![g]).await?;
        Ok(infos.remove(0))
    }

    /// Infos of many groups in three queries (members, locations, location groups), not
    /// a few per group.
    async fn group_infos(&self, groups: Vec<onramp_store::GroupRow>) -> CoreResult<Vec<GroupInfo>> {
        use std::collections::HashMap;
        let ids: Vec<i64> = groups.iter().map(|g| g.id).collect();
        let mut members: HashMap<i64, Vec<String>> = HashMap::new();
        for (group_id, username) in self.store().members_of_groups(&ids).await? {
            members.entry(group_id).or_default().push(username);
        }
        let locations = self.store().list_locations().await?;
        let mut allowed: HashMap<i64, Vec<i64>> = HashMap::new();
        for (location_id, group_id, _) in self.store().location_group_links().await? {
            allowed.entry(location_id).or_default().push(group_id);
        }
        Ok(groups
            .into_iter()
            .map(|g| {
                // A location without groups is open to everyone.
                let vpn_locations = locations
                    .iter()
                    .filter(|l| allowed.get(&l.id).is_none_or(|gs| gs.contains(&g.id)))
                    .map(|l| l.name.clone())
                    .collect();
                let members = members.remove(&g.id).unwrap_or_default();
                GroupInfo { id: g.id, name: g.name, members, vpn_locations, is_admin: g.is_admin }
            })
            .collect())
    }

    /// Group names only (pickers in the web UI), without loading every membership.
    pub async fn group_names(&self) -> CoreResult<Vec<String>> {
        Ok(self.store().list_groups().await?.into_iter().map(|g| g.name).collect())
    }

    pub async fn list_groups(&self) -> CoreResult<Vec<GroupInfo>> {
        self.group_infos(self.store().list_groups().await?).await
    }

    /// One page of groups (by name) and how many there are: a fixed number of queries.
    pub async fn list_groups_page(&self, limit: i64, offset: i64) -> CoreResult<(Vec<GroupInfo>, i64)> {
        let (rows, total) = self.store().list_groups_page(limit, offset).await?;
        Ok((self.group_infos(rows).await?, total))
    }

    pub async fn update_group(
        &self,
        actor: &Actor,
        name: &str,
        new_name: Option<String>,
        is_admin: Option<bool>,
    ) -> CoreResult<GroupInfo> {
        let g = self.store().group_by_name(name).await.or_not_found("group", name)?;
        let new_name = match new_name {
            Some(n) => parse_name("name", &n, 64)?,
            None => g.name.clone(),
        };
        let was_admin = g.is_admin;
        let is_admin = is_admin.unwrap_or(g.is_admin);
        let g = self
            .store()
            .update_group_keeping_admin(g.id, &new_name, is_admin)
            .await
            .map_err(|e| match e {
                onramp_store::StoreError::Conflict { key: onramp_store::UniqueKey::GroupName } => {
                    CoreError::Conflict { field: "name", message: format!("group {new_name:?} already exists") }
                }
                other => other.into(),
            })?
            .ok_or_else(|| last_admin(format!("removing admin rights from group {name}")))?;
        let changes = crate::audit_diff(
            &serde_json::json!({"name": name, "is_admin": was_admin}),
            &serde_json::json!({"name": g.name, "is_admin": g.is_admin}),
        );
        self.audit(actor, "group.updated", Some(g.name.clone()), changes).await;
        self.group_info(g).await
    }

    pub async fn delete_group(&self, actor: &Actor, name: &str) -> CoreResult<()> {
        let g = self.store().group_by_name(name).await.or_not_found("group", name)?;
        if !self.store().delete_group_keeping_admin(g.id).await.or_not_found("group", name)? {
            return Err(last_admin(format!("deleting group {name}")));
        }
        self.audit(actor, "group.deleted", Some(g.name), serde_json::json!({})).await;
        Ok(())
    }

    pub async fn add_group_member(&self, actor: &Actor, group: &str, username: &str) -> CoreResult<GroupInfo> {
        let g = self.store().group_by_name(group).await.or_not_found("group", group)?;
        let u = self.user_row(username).await?;
        if !self.store().add_member(g.id, u.id).await? {
            return Err(CoreError::Conflict {
                field: "username",
                message: format!("{username} is already a member of {group}"),
            });
        }
        // Locations open to this group now include the user's devices.
        self.store().allocate_missing_addresses().await?;
        self.audit(actor, "group.member_added", Some(g.name.clone()), serde_json::json!({"username": username})).await;
        self.group_info(g).await
    }

    pub async fn remove_group_member(&self, actor: &Actor, group: &str, username: &str) -> CoreResult<GroupInfo> {
        let g = self.store().group_by_name(group).await.or_not_found("group", group)?;
        let u = self.user_row(username).await?;
        if g.is_admin && actor.user_id == Some(u.id) {
            return Err(CoreError::refused("cannot_remove_self", "you cannot remove yourself from an admin group"));
        }
        if !self
            .store()
            .remove_member_keeping_admin(g.id, u.id)
            .await
            .or_not_found("membership", &format!("{username} in {group}"))?
        {
            return Err(last_admin(format!("removing {username} from {group}")));
        }
        self.audit(actor, "group.member_removed", Some(g.name.clone()), serde_json::json!({"username": username}))
            .await;
        self.group_info(g).await
    }
}
