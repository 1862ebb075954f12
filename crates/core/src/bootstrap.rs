use crate::groups::ADMIN_GROUP;
use crate::{Actor, Core, CoreResult};
use onramp_store::NewUser;

impl Core {
    /// On an empty database: creates the admin group and the `admin` user (no password; the
    /// operator gets in with `onramp admin api-token create`). Returns the created username.
    pub async fn bootstrap(&self, admin_email: &str) -> CoreResult<Option<String>> {
        if self.store().count_users().await? > 0 {
            return Ok(None);
        }
        let now = self.now();
        let group = match self.store().group_by_name(ADMIN_GROUP).await {
            Ok(g) => g,
            Err(_) => self.store().create_group(ADMIN_GROUP, true, now).await?,
        };
        let email = onramp_domain::validate::Email::parse("bootstrap admin e-mail", admin_email)?;
        let user = self
            .store()
            .create_user(
                &NewUser {
                    username: "admin".into(),
                    first_name: "Onramp".into(),
                    last_name: "Administrator".into(),
                    email: email.into_inner(),
                    phone: None,
                    password_hash: None,
                    is_active: true,
                },
                now,
            )
            .await?;
        self.store().add_member(group.id, user.id).await?;
        self.audit(
            &Actor::system("bootstrap"),
            "user.created",
            Some(user.username.clone()),
            serde_json::json!({"bootstrap": true}),
        )
        .await;
        Ok(Some(user.username))
    }
}
