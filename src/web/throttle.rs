//! Sign-in throttling by client address: after [`ADDRESS_FAILURES`] failed sign-ins from one
//! address within [`WINDOW`] seconds, that address may not try again until the window ends.
//! (Each account is throttled too, in its own record: see the sign-in page.) Kept in memory:
//! one website process sees every attempt it answers, and a restart forgets only this.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Failed sign-ins one client address may make in a window.
pub const ADDRESS_FAILURES: u32 = 20;
/// Failed sign-ins in a row that lock an account, and for how long (seconds).
pub const ACCOUNT_FAILURES: u32 = 5;
pub const WINDOW: u64 = 15 * 60;
/// Addresses remembered at most: beyond it, the windows already over are forgotten first, then
/// the oldest.
const REMEMBERED: usize = 100_000;

/// The address an attempt is counted against: an IPv6 client by its /64 (one subscriber or
/// one host holds a whole /64, and would otherwise have endless addresses to try from).
fn key(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V4(_) => client,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[derive(Default)]
pub struct Throttle {
    /// Address -> (failures, when its window started).
    failures: Mutex<HashMap<IpAddr, (u32, u64)>>,
}

impl Throttle {
    /// Until when `client` may not try (seconds since the epoch), if it is throttled now.
    pub fn blocked_until(&self, client: IpAddr, now: u64) -> Option<u64> {
        let client = key(client);
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        match failures.get(&client) {
            Some(&(count, start)) if count >= ADDRESS_FAILURES && start + WINDOW > now => {
                Some(start + WINDOW)
            }
            _ => None,
        }
    }

    /// Counts a sign-in attempt from `client` before its password is checked (so that many
    /// attempts at once cannot each get a guess past the limit): `Err(until)` when the address
    /// is throttled, else whether this attempt reached the limit. A success is taken back with
    /// [`Throttle::succeeded`].
    pub fn attempt(&self, client: IpAddr, now: u64) -> Result<bool, u64> {
        if let Some(until) = self.blocked_until(client, now) {
            return Err(until);
        }
        Ok(self.failed(client, now))
    }

    /// Takes back the count of an attempt that succeeded.
    pub fn succeeded(&self, client: IpAddr) {
        let client = key(client);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = failures.get_mut(&client) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }

    /// Counts a failed sign-in from `client`; answers whether this one reached the limit.
    pub fn failed(&self, client: IpAddr, now: u64) -> bool {
        let client = key(client);
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= REMEMBERED && !failures.contains_key(&client) {
            failures.retain(|_, (_, start)| *start + WINDOW > now);
            if failures.len() >= REMEMBERED
                && let Some(oldest) = failures
                    .iter()
                    .min_by_key(|(_, (_, start))| *start)
                    .map(|(a, _)| *a)
            {
                failures.remove(&oldest);
            }
        }
        let entry = failures.entry(client).or_insert((0, now));
        if entry.1 + WINDOW <= now {
            *entry = (0, now);
        }
        entry.0 += 1;
        entry.0 == ADDRESS_FAILURES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_throttled_after_its_failures_until_the_window_ends() {
        let throttle = Throttle::default();
        let client: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        for i in 0..ADDRESS_FAILURES - 1 {
            assert!(!throttle.failed(client, 1000 + u64::from(i)));
            assert_eq!(throttle.blocked_until(client, 1000 + u64::from(i)), None);
        }
        assert!(throttle.failed(client, 1100), "the limit is reported once");
        assert_eq!(throttle.blocked_until(client, 1100), Some(1000 + WINDOW));
        assert_eq!(throttle.blocked_until(other, 1100), None);
        assert_eq!(throttle.blocked_until(client, 1000 + WINDOW), None);
        assert!(!throttle.failed(client, 1000 + WINDOW), "a new window");
    }

    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        let throttle = Throttle::default();
        for i in 0..ADDRESS_FAILURES {
            let client: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            assert!(throttle.attempt(client, 1000).is_ok());
        }
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(throttle.attempt(same_64, 1001), Err(1000 + WINDOW));
        assert_eq!(throttle.attempt(other_64, 1001), Ok(false));
        // A success is taken back.
        throttle.succeeded(other_64);
        assert_eq!(throttle.blocked_until(other_64, 1001), None);
    }
}
