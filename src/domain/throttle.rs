//! Backoff for password sign-ins (web `/login` and Basic `user:password` when minting tokens),
//! so that passwords cannot be guessed at argon2 speed. Two counters of consecutive failures:
//! per account name (as typed, existing or not, so lockouts do not reveal which names exist)
//! and per client address (the TCP peer). Once a counter reaches its threshold, each further
//! failure locks that account or address for `base * 2^(failures - threshold)`, capped; while
//! locked, attempts are refused before argon2 runs. A success clears the account's counter (not
//! the address's: signing in to one's own account must not reset guesses at others). Counters
//! idle for longer than the cap are forgotten. In memory, bounded.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sign-in backoff settings (`pfai serve` flags; defaults in the README's table).
#[derive(Debug, Clone)]
pub struct ThrottleSettings {
    /// Consecutive failures of one account name before it is locked out.
    pub account_threshold: u32,
    /// Consecutive failures from one client address before it is locked out.
    pub address_threshold: u32,
    /// The first lockout; each further failure doubles it.
    pub base: Duration,
    /// The longest lockout.
    pub max: Duration,
}

impl Default for ThrottleSettings {
    fn default() -> Self {
        ThrottleSettings {
            account_threshold: 5,
            address_threshold: 20,
            base: Duration::from_secs(1),
            max: Duration::from_secs(15 * 60),
        }
    }
}

/// The key of a client address: IPv4 as is, IPv6 by its /64 (one host is usually given a
/// whole /64, so counting single IPv6 addresses would let it rotate past the limit).
fn client_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                IpAddr::V6(seg.into())
            }
        },
    }
}

/// Most accounts (and, separately, addresses) tracked at once; past it, idle entries are
/// dropped first, then those whose lockout ends soonest.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

/// The two counters. One per server (`Core::sign_in`).
#[derive(Default)]
pub struct Throttle {
    settings: ThrottleSettings,
    state: Mutex<(HashMap<String, Entry>, HashMap<IpAddr, Entry>)>,
}

fn remaining(e: Option<&Entry>, now: Instant) -> Option<Duration> {
    e.and_then(|e| e.locked_until)
        .filter(|&until| until > now)
        .map(|until| until - now)
}

fn fail<K: std::hash::Hash + Eq + Clone>(
    map: &mut HashMap<K, Entry>,
    key: &K,
    threshold: u32,
    s: &ThrottleSettings,
    now: Instant,
) {
    if !map.contains_key(key) && map.len() >= MAX_TRACKED {
        map.retain(|_, e| remaining(Some(&*e), now).is_some() || now - e.last_failure < s.max);
        if map.len() >= MAX_TRACKED {
            if let Some(k) = map
                .iter()
                .min_by_key(|(_, e)| (e.locked_until, e.last_failure))
                .map(|(k, _)| k.clone())
            {
                map.remove(&k);
            }
        }
    }
    let e = map.entry(key.clone()).or_insert(Entry {
        failures: 0,
        last_failure: now,
        locked_until: None,
    });
    if now - e.last_failure >= s.max {
        e.failures = 0;
    }
    e.failures = e.failures.saturating_add(1);
    e.last_failure = now;
    if e.failures >= threshold.max(1) {
        let doublings = (e.failures - threshold.max(1)).min(30);
        // At most a year, so that `now + lock` cannot overflow whatever the settings say.
        let lock = s
            .base
            .saturating_mul(1u32 << doublings)
            .min(s.max)
            .min(Duration::from_secs(365 * 86_400));
        e.locked_until = Some(now + lock);
    }
}

impl Throttle {
    /// A throttle with these settings.
    pub fn new(settings: ThrottleSettings) -> Self {
        Throttle {
            settings,
            state: Mutex::default(),
        }
    }

    fn key(account: &str) -> String {
        account.trim().to_lowercase()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, (HashMap<String, Entry>, HashMap<IpAddr, Entry>)> {
        // A panic elsewhere must not switch the throttle off: keep using the counters.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts a password attempt: `Err(wait)` while the account or the address is locked out
    /// (the attempt must be refused without checking the password). Otherwise the attempt is
    /// counted as a failure at once, until `success` says otherwise, so parallel guesses cannot
    /// all pass this check before any of them is recorded.
    pub fn attempt(&self, account: &str, addr: Option<IpAddr>) -> Result<(), Duration> {
        let addr = addr.map(client_key);
        let now = Instant::now();
        let s = &self.settings;
        let mut st = self.state();
        let (accounts, addrs) = &mut *st;
        let key = Self::key(account);
        let by_account = remaining(accounts.get(&key), now);
        let by_addr = addr.and_then(|a| remaining(addrs.get(&a), now));
        if let Some(wait) = by_account.max(by_addr) {
            return Err(wait);
        }
        fail(accounts, &key, s.account_threshold, s, now);
        if let Some(a) = addr {
            fail(addrs, &a, s.address_threshold, s, now);
        }
        Ok(())
    }

    /// Records that the attempt's password was right: the account's counter starts over, and
    /// the address gets back the failure `attempt` counted in advance.
    pub fn success(&self, account: &str, addr: Option<IpAddr>) {
        let addr = addr.map(client_key);
        let threshold = self.settings.address_threshold.max(1);
        let mut st = self.state();
        st.0.remove(&Self::key(account));
        if let Some(e) = addr.and_then(|a| st.1.get_mut(&a)) {
            e.failures = e.failures.saturating_sub(1);
            if e.failures < threshold {
                e.locked_until = None;
            }
        }
    }

    #[cfg(test)]
    fn failure(&self, account: &str, addr: Option<IpAddr>) {
        let addr = addr.map(client_key);
        let now = Instant::now();
        let s = &self.settings;
        let mut st = self.state();
        let (accounts, addrs) = &mut *st;
        fail(accounts, &Self::key(account), s.account_threshold, s, now);
        if let Some(a) = addr {
            fail(addrs, &a, s.address_threshold, s, now);
        }
    }

    #[cfg(test)]
    fn check(&self, account: &str, addr: Option<IpAddr>) -> Result<(), Duration> {
        let addr = addr.map(client_key);
        let now = Instant::now();
        let st = self.state();
        let by_account = remaining(st.0.get(&Self::key(account)), now);
        let by_addr = addr.and_then(|a| remaining(st.1.get(&a), now));
        by_account.max(by_addr).map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_double_and_are_capped() {
        let t = Throttle::new(ThrottleSettings {
            account_threshold: 3,
            address_threshold: 100,
            base: Duration::from_secs(10),
            max: Duration::from_secs(35),
        });
        for _ in 0..2 {
            t.failure("Alice", None);
            assert!(t.check("alice", None).is_ok());
        }
        t.failure("alice", None);
        let w = t.check("alice", None).unwrap_err();
        assert!(w <= Duration::from_secs(10) && w > Duration::from_secs(8));
        t.failure("alice", None);
        assert!(t.check("alice", None).unwrap_err() > Duration::from_secs(18));
        t.failure("alice", None);
        t.failure("alice", None);
        assert!(t.check("alice", None).unwrap_err() <= Duration::from_secs(35));
        assert!(t.check("bob", None).is_ok());
        t.success("alice", None);
        assert!(t.check("alice", None).is_ok());
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_counter() {
        let t = Throttle::new(ThrottleSettings {
            account_threshold: 100,
            address_threshold: 2,
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        });
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(t.attempt("x", Some(a)).is_ok());
        assert!(t.attempt("y", Some(b)).is_ok());
        assert!(t.attempt("z", Some(a)).is_err(), "the /64 is locked");
        assert!(t.attempt("z", Some(other)).is_ok());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(client_key(mapped), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn parallel_guesses_are_counted_before_any_password_is_checked() {
        let t = Throttle::new(ThrottleSettings {
            account_threshold: 3,
            address_threshold: 100,
            base: Duration::from_secs(10),
            max: Duration::from_secs(60),
        });
        let addr: IpAddr = [127, 0, 0, 1].into();
        // Three attempts start before any result is known: the fourth is refused.
        for _ in 0..3 {
            assert!(t.attempt("alice", Some(addr)).is_ok());
        }
        assert!(t.attempt("alice", Some(addr)).is_err());
        // A right password gives the address its count back and unlocks the account.
        t.success("alice", Some(addr));
        assert!(t.attempt("alice", Some(addr)).is_ok());
        assert_eq!(t.state().1[&addr].failures, 3);
    }

    #[test]
    fn the_tracked_set_stays_bounded() {
        let t = Throttle::new(ThrottleSettings::default());
        for i in 0..(MAX_TRACKED + 50) {
            t.failure(&format!("user{i}"), None);
        }
        assert!(t.state.lock().unwrap().0.len() <= MAX_TRACKED);
    }
}
