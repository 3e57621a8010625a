//! Failed-login throttling, per user and client address together, and per
//! client address alone.
//!
//! - After [`ThrottleOptions::free_failures`] failures of one user from
//!   one address, each further attempt waits a growing delay (doubling,
//!   up to [`ThrottleOptions::max_delay`]); after
//!   [`ThrottleOptions::user_failures`] it is refused (429) until
//!   [`ThrottleOptions::window`] has passed since the last failure.
//! - After [`ThrottleOptions::address_failures`] failures from one address,
//!   whatever the user, that address is refused the same way (password
//!   spraying).
//!
//! Nothing is counted per user alone: an attacker guessing alice's password
//! from one address cannot lock alice out when she logs in from another.
//! IPv6 addresses count by their /64, which one client usually holds
//! whole. Memory is bounded by [`ThrottleOptions::max_entries`]; when full,
//! expired entries go first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

/// Throttling thresholds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleOptions {
    /// Failures of one user from one address before attempts are slowed.
    pub free_failures: u32,
    /// Failures of one user from one address before attempts are refused.
    pub user_failures: u32,
    /// Failures from one address, any user, before it is refused.
    pub address_failures: u32,
    /// The longest delay before an attempt.
    pub max_delay: Duration,
    /// How long failures are remembered after the last one.
    pub window: Duration,
    /// Most (user, address) and address entries kept.
    pub max_entries: usize,
}

impl Default for ThrottleOptions {
    fn default() -> Self {
        Self {
            free_failures: 3,
            user_failures: 10,
            address_failures: 100,
            max_delay: Duration::from_secs(2),
            window: Duration::from_secs(15 * 60),
            max_entries: 100_000,
        }
    }
}

/// What to do with a login attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Check the credentials after waiting this long (zero: at once).
    Proceed(Duration),
    /// Refuse without checking; the client may retry after this long.
    Refuse(Duration),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// A user (by hash: names are not kept) from an address.
    Pair([u8; 16], IpAddr),
    Address(IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The throttle's state, shared by every request.
#[derive(Debug)]
pub struct Throttle {
    options: ThrottleOptions,
    entries: Mutex<HashMap<Key, Failures>>,
}

impl Throttle {
    /// An empty throttle.
    pub fn new(options: ThrottleOptions) -> Self {
        Self {
            options,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `user` may try to log in from `address` now, and after what
    /// delay.
    pub fn check(&self, user: &str, address: IpAddr, now: Instant) -> Verdict {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let live = |key| {
            entries
                .get(&key)
                .filter(|f| now.saturating_duration_since(f.last) < self.options.window)
                .copied()
        };
        let o = &self.options;
        if let Some(f) = live(Key::Address(client(address)))
            && f.count >= o.address_failures
        {
            return Verdict::Refuse(o.window.saturating_sub(now - f.last));
        }
        let Some(f) = live(pair(user, address)) else {
            return Verdict::Proceed(Duration::ZERO);
        };
        if f.count >= o.user_failures {
            return Verdict::Refuse(o.window.saturating_sub(now - f.last));
        }
        if f.count < o.free_failures {
            return Verdict::Proceed(Duration::ZERO);
        }
        let doublings = (f.count - o.free_failures).min(16);
        let delay = Duration::from_millis(250).saturating_mul(1 << doublings);
        Verdict::Proceed(delay.min(o.max_delay))
    }

    /// Records a failed login.
    pub fn failed(&self, user: &str, address: IpAddr, now: Instant) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() + 2 > self.options.max_entries {
            self.make_room(&mut entries, now);
        }
        for key in [pair(user, address), Key::Address(client(address))] {
            let f = entries.entry(key).or_insert(Failures {
                count: 0,
                last: now,
            });
            if now.saturating_duration_since(f.last) >= self.options.window {
                f.count = 0;
            }
            f.count = f.count.saturating_add(1);
            f.last = now;
        }
    }

    /// Records a successful login: that user's failures from that address
    /// are forgotten (the address's own count stays).
    pub fn succeeded(&self, user: &str, address: IpAddr) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&pair(user, address));
    }

    /// Number of entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries, then, if still full, the oldest half.
    fn make_room(&self, entries: &mut HashMap<Key, Failures>, now: Instant) {
        let window = self.options.window;
        entries.retain(|_, f| now.saturating_duration_since(f.last) < window);
        if entries.len() + 2 > self.options.max_entries {
            let mut ages: Vec<Instant> = entries.values().map(|f| f.last).collect();
            let mid = ages.len() / 2;
            let (_, cut, _) = ages.select_nth_unstable(mid);
            let cut = *cut;
            entries.retain(|_, f| f.last > cut);
        }
    }
}

fn pair(user: &str, address: IpAddr) -> Key {
    let hash = Sha256::digest(user.as_bytes());
    let mut short = [0u8; 16];
    short.copy_from_slice(&hash[..16]);
    Key::Pair(short, client(address))
}

/// The address as one client: IPv4 whole, IPv6 by its /64.
fn client(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut octets = v6.octets();
                octets[8..].fill(0);
                IpAddr::V6(octets.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn delays_grow_then_refuse_then_expire() {
        let t = Throttle::new(ThrottleOptions::default());
        let now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..10 {
            match t.check("alice", A, now) {
                Verdict::Proceed(d) => delays.push(d.as_millis()),
                Verdict::Refuse(_) => panic!("refused too early"),
            }
            t.failed("alice", A, now);
        }
        assert_eq!(delays, [0, 0, 0, 250, 500, 1000, 2000, 2000, 2000, 2000]);
        assert!(matches!(t.check("alice", A, now), Verdict::Refuse(_)));
        // Another address is not locked out, nor another user here.
        assert_eq!(t.check("alice", B, now), Verdict::Proceed(Duration::ZERO));
        assert_eq!(t.check("bob", A, now), Verdict::Proceed(Duration::ZERO));
        let later = now + Duration::from_secs(15 * 60);
        assert_eq!(t.check("alice", A, later), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn success_forgets_the_users_failures() {
        let t = Throttle::new(ThrottleOptions::default());
        let now = Instant::now();
        for _ in 0..5 {
            t.failed("alice", A, now);
        }
        t.succeeded("alice", A);
        assert_eq!(t.check("alice", A, now), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn spraying_from_one_address_is_refused() {
        let t = Throttle::new(ThrottleOptions {
            address_failures: 20,
            ..ThrottleOptions::default()
        });
        let now = Instant::now();
        for i in 0..20 {
            t.failed(&format!("user{i}"), A, now);
        }
        assert!(matches!(t.check("fresh", A, now), Verdict::Refuse(_)));
        assert_eq!(t.check("fresh", B, now), Verdict::Proceed(Duration::ZERO));
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_memory_is_bounded() {
        let t = Throttle::new(ThrottleOptions {
            address_failures: 3,
            max_entries: 100,
            ..ThrottleOptions::default()
        });
        let now = Instant::now();
        for i in 0..3u16 {
            let addr: IpAddr = format!("2001:db8::{i:x}").parse().unwrap();
            t.failed("x", addr, now);
        }
        let other: IpAddr = "2001:db8::ffff".parse().unwrap();
        assert!(matches!(t.check("y", other, now), Verdict::Refuse(_)));
        for i in 0..1000u32 {
            t.failed(
                &i.to_string(),
                IpAddr::V4(i.into()),
                now + Duration::from_millis(i.into()),
            );
        }
        assert!(t.len() <= 100, "{} entries", t.len());
    }
}
