//! Per-IP token-bucket rate limit for the public API.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl RateLimiter {
    /// `per_sec` requests per second with a burst of four seconds' worth; 0 = unlimited.
    pub fn new(per_sec: u32) -> Self {
        Self { per_sec: f64::from(per_sec), burst: f64::from(per_sec) * 4.0, buckets: Mutex::new(HashMap::new()) }
    }

    /// `Ok` to proceed, or `Err(seconds to wait)`.
    pub fn check(&self, ip: IpAddr) -> Result<(), u64> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), u64> {
        if self.per_sec == 0.0 {
            return Ok(());
        }
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        // Bound memory under a spray of source addresses: drop buckets that refilled.
        if map.len() > 100_000 {
            let (per_sec, burst) = (self.per_sec, self.burst);
            map.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * per_sec < burst);
        }
        let (tokens, at) = map.entry(ip).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_sec).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_refills() {
        let l = RateLimiter::new(1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..4 {
            assert!(l.check_at(ip, t0).is_ok());
        }
        assert_eq!(l.check_at(ip, t0), Err(1));
        assert!(l.check_at("192.0.2.2".parse().unwrap(), t0).is_ok(), "buckets are per IP");
        assert!(l.check_at(ip, t0 + Duration::from_millis(1100)).is_ok());
        assert!(RateLimiter::new(0).check(ip).is_ok());
    }
}
