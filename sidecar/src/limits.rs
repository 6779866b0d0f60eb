//! Per-owner quotas: how many uploads an owner may start per minute (a token bucket in this
//! process: each signer replica counts on its own) and how many multipart uploads an owner
//! may have open (counted from S3's list of uploads in progress, so it holds across
//! replicas). Requests without an owner share the owner `""`. Within a process, the count
//! and the create it allows happen under one lock per owner ([`Stripes`]), so concurrent
//! creates cannot all see the same count and overshoot the cap.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Owners tracked before full buckets are forgotten (a full bucket is what a new one is).
const MAX_TRACKED: usize = 10_000;

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A token bucket per owner: `per_minute` starts, refilled evenly, at most a minute's worth
/// saved up.
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// `per_minute` 0: no limit.
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one start for `owner` now; `Err(wait)` until one is available. Without a limit,
    /// not even the clock is read (this is on every request's path).
    pub fn take(&self, owner: &str) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        self.take_at(owner, Instant::now())
    }

    /// [`RateLimiter::take`] at `now`.
    pub fn take_at(&self, owner: &str, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < capacity
            });
        }
        // The owner's name is copied only the first time it is seen.
        if let Some(b) = buckets.get_mut(owner) {
            return b.take(now, per_second, capacity);
        }
        let mut b = Bucket {
            tokens: capacity,
            at: now,
        };
        let taken = b.take(now, per_second, capacity);
        buckets.insert(owner.to_owned(), b);
        taken
    }
}

impl Bucket {
    /// Refills for the time since the last start, then takes one token if there is one.
    fn take(&mut self, now: Instant, per_second: f64, capacity: f64) -> Result<(), Duration> {
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * per_second).min(capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }
}

/// A fixed set of async locks, one picked per name: callers with the same name take turns,
/// different names mostly do not wait for each other. Bounded memory, whatever the names.
pub struct Stripes(Vec<tokio::sync::Mutex<()>>);

impl Default for Stripes {
    fn default() -> Self {
        Self((0..64).map(|_| tokio::sync::Mutex::new(())).collect())
    }
}

impl Stripes {
    fn index(&self, name: &str) -> usize {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let hash = BuildHasherDefault::<DefaultHasher>::default().hash_one(name);
        (hash % self.0.len() as u64) as usize
    }

    pub async fn lock(&self, name: &str) -> tokio::sync::MutexGuard<'_, ()> {
        self.0[self.index(name)].lock().await
    }

    /// The turns of two names at once, taken in one global order (and once when both fall on
    /// the same lock), so two callers holding one and waiting for the other cannot deadlock.
    pub async fn lock_both(&self, a: &str, b: &str) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let (mut i, mut j) = (self.index(a), self.index(b));
        if i > j {
            std::mem::swap(&mut i, &mut j);
        }
        let mut guards = vec![self.0[i].lock().await];
        if j != i {
            guards.push(self.0[j].lock().await);
        }
        guards
    }
}

/// Keys being verified in this process: a second call for the same key waits its turn
/// elsewhere (409) instead of racing the first.
#[derive(Default)]
pub struct InProgress(Mutex<std::collections::HashSet<String>>);

pub struct Claim<'a>(&'a InProgress, String);

impl InProgress {
    /// Claims `key` until the returned guard drops; `None` while another call holds it.
    pub fn claim(&self, key: &str) -> Option<Claim<'_>> {
        let mut keys = self.0.lock().unwrap_or_else(|p| p.into_inner());
        keys.insert(key.to_owned())
            .then(|| Claim(self, key.to_owned()))
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut keys = self.0.0.lock().unwrap_or_else(|p| p.into_inner());
        keys.remove(&self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names on one lock, and two callers taking two names in opposite orders, all finish.
    #[tokio::test]
    async fn both_turns_never_deadlock() {
        let stripes = std::sync::Arc::new(Stripes::default());
        let names: Vec<String> = (0..200).map(|i| format!("k{i}")).collect();
        let mut tasks = tokio::task::JoinSet::new();
        for pair in names.windows(2) {
            let (a, b) = (pair[0].clone(), pair[1].clone());
            for (x, y) in [(a.clone(), b.clone()), (b, a)] {
                let stripes = stripes.clone();
                tasks.spawn(async move {
                    let both = stripes.lock_both(&x, &y).await;
                    tokio::task::yield_now().await;
                    drop(both);
                    // One name twice: one lock, taken once.
                    let _same = stripes.lock_both(&x, &x).await;
                });
            }
        }
        let done = tokio::time::timeout(std::time::Duration::from_secs(10), tasks.join_all()).await;
        assert!(done.is_ok(), "deadlocked");
    }

    #[test]
    fn a_minute_of_starts_then_one_per_refill_per_owner() {
        let limiter = RateLimiter::new(6); // one every 10 s
        let t0 = Instant::now();
        for _ in 0..6 {
            assert_eq!(limiter.take_at("alice", t0), Ok(()));
        }
        let wait = limiter.take_at("alice", t0).unwrap_err();
        assert!((9.9..=10.0).contains(&wait.as_secs_f64()), "{wait:?}");
        // Another owner is not held back by alice.
        assert_eq!(limiter.take_at("bob", t0), Ok(()));
        // After the wait, one more; never more than a minute's worth saved up.
        assert_eq!(limiter.take_at("alice", t0 + wait), Ok(()));
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..6 {
            assert_eq!(limiter.take_at("alice", later), Ok(()));
        }
        assert!(limiter.take_at("alice", later).is_err());
        assert_eq!(RateLimiter::new(0).take_at("x", t0), Ok(()));
    }
}
