//! Config sync: poll every instance with its polling token and apply what changed.

use crate::api::{ApiError, EdgeClient};
use crate::store::{Instance, Store, StoreError, SyncDiff};
use std::time::Duration;

#[derive(Debug)]
pub enum Outcome {
    Updated(SyncDiff),
    /// 401/403: the polling token is no longer accepted; the user needs a new token.
    NeedsToken(String),
    /// The account is disabled (the message names whom to contact); polling goes on, so a
    /// re-enabled account picks up where it was.
    AccountDisabled(String),
    /// The administrator deleted this device: its locations were removed here and polling
    /// stops.
    DeviceRemoved,
    /// 402: the server stopped serving this client; polling stops quietly.
    Stopped,
    /// Not polled (no token, or stopped earlier).
    Skipped(&'static str),
    Failed(ApiError),
}

/// Polls each instance once and stores the result.
pub async fn sync_once(store: &Store) -> Result<Vec<(Instance, Outcome)>, StoreError> {
    let mut out = vec![];
    for i in store.instances().await? {
        let outcome = sync_instance(store, &i).await?;
        out.push((i, outcome));
    }
    Ok(out)
}

async fn sync_instance(store: &Store, i: &Instance) -> Result<Outcome, StoreError> {
    if i.sync_state == "stopped" {
        return Ok(Outcome::Skipped("the server stopped serving this client"));
    }
    if i.sync_state == "device_removed" {
        // Not polled (its token is dead), but still reported: scripts keep seeing code 8.
        return Ok(Outcome::DeviceRemoved);
    }
    let Some(token) = i.polling_token.as_deref() else { return Ok(Outcome::Skipped("no polling token")) };
    let Ok(url) = url::Url::parse(&i.edge_url) else { return Ok(Outcome::Skipped("no valid edge URL")) };
    let mut client = EdgeClient::new(&url);
    Ok(match client.poll(token).await {
        Ok(resp) => Outcome::Updated(store.apply_poll(&i.id, &resp).await?),
        Err(ApiError::AccountDisabled { message }) => {
            store.set_sync_state(&i.id, "account_disabled").await?;
            Outcome::AccountDisabled(message)
        }
        Err(ApiError::DeviceRemoved) => {
            // Keeping the locations would offer tunnels the gateways no longer accept.
            store.device_removed(&i.id).await?;
            Outcome::DeviceRemoved
        }
        Err(ApiError::Unauthorized { message, .. }) => {
            store.set_sync_state(&i.id, "needs_token").await?;
            Outcome::NeedsToken(message)
        }
        Err(ApiError::Stopped { .. }) => {
            store.set_sync_state(&i.id, "stopped").await?;
            Outcome::Stopped
        }
        Err(e) => Outcome::Failed(e),
    })
}

/// The exit code a sync run ends with: the first instance whose account is disabled or
/// whose device was removed decides it (scripts test these codes).
pub fn exit_of(results: &[(Instance, Outcome)]) -> Option<crate::exit::Exit> {
    results.iter().find_map(|(_, o)| match o {
        Outcome::AccountDisabled(_) => Some(crate::exit::Exit::AccountDisabled),
        Outcome::DeviceRemoved => Some(crate::exit::Exit::DeviceRemoved),
        _ => None,
    })
}

/// The wait before the next poll: `interval` ± 10 % so many clients do not poll in step.
pub fn jittered(interval: Duration) -> Duration {
    use rand::Rng;
    let ms = interval.as_millis() as f64;
    Duration::from_millis((ms * rand::thread_rng().gen_range(0.9..=1.1)) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent_and_varies() {
        let base = Duration::from_secs(30);
        let waits: Vec<Duration> = (0..200).map(|_| jittered(base)).collect();
        assert!(waits.iter().all(|w| *w >= Duration::from_secs(27) && *w <= Duration::from_secs(33)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 50, "clients must not poll in step");
    }
}
