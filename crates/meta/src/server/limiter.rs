//! The login limiter: failed logins by user and by source address, in a
//! sliding window, kept by the leader in memory (a new leader forgets).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::limits::{
    LOGIN_WINDOW, MAX_FAILURES_PER_SOURCE, MAX_FAILURES_PER_USER, MAX_LIMITER_KEYS,
};

/// Failed logins by user and by source, in a sliding window.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    /// `Err(seconds to wait)` when `user` or `source` has failed too often.
    pub fn check(&self, user: &str, source: IpAddr, now: Instant) -> Result<(), u64> {
        let mut failures = self.failures.lock().expect("limiter lock");
        let mut wait = None;
        for (key, limit) in [
            (format!("user:{user}"), MAX_FAILURES_PER_USER),
            (format!("source:{source}"), MAX_FAILURES_PER_SOURCE),
        ] {
            if let Some(times) = failures.get_mut(&key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= LOGIN_WINDOW)
                {
                    times.pop_front();
                }
                if times.len() >= limit {
                    let oldest = *times.front().expect("over the limit means not empty");
                    let left = LOGIN_WINDOW.saturating_sub(now.duration_since(oldest));
                    wait = Some(wait.unwrap_or(0).max(left.as_secs() + 1));
                }
            }
        }
        match wait {
            Some(seconds) => Err(seconds),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, user: &str, source: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().expect("limiter lock");
        if failures.len() >= MAX_LIMITER_KEYS {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < LOGIN_WINDOW)
            });
            if failures.len() >= MAX_LIMITER_KEYS {
                failures.clear();
            }
        }
        for key in [format!("user:{user}"), format!("source:{source}")] {
            let times = failures.entry(key).or_default();
            times.push_back(now);
            while times.len() > MAX_FAILURES_PER_SOURCE {
                times.pop_front();
            }
        }
    }

    pub fn record_success(&self, user: &str) {
        self.failures
            .lock()
            .expect("limiter lock")
            .remove(&format!("user:{user}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_stops_a_user_after_five_failures_for_a_minute() {
        let limiter = LoginLimiter::default();
        let source: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "127.0.0.2".parse().unwrap();
        let start = Instant::now();
        for _ in 0..MAX_FAILURES_PER_USER {
            assert!(limiter.check("alice", source, start).is_ok());
            limiter.record_failure("alice", source, start);
        }
        let wait = limiter.check("alice", other, start).unwrap_err();
        assert!((59..=61).contains(&wait), "{wait}");
        assert!(limiter.check("bob", source, start).is_ok(), "per user");
        assert!(limiter.check("alice", source, start + LOGIN_WINDOW).is_ok());
        limiter.record_success("alice");
        assert!(limiter.check("alice", source, start).is_ok());
    }

    #[test]
    fn the_limiter_stops_a_source_that_tries_many_users() {
        let limiter = LoginLimiter::default();
        let source: IpAddr = "127.0.0.1".parse().unwrap();
        let start = Instant::now();
        for i in 0..MAX_FAILURES_PER_SOURCE {
            limiter.record_failure(&format!("user{i}"), source, start);
        }
        assert!(limiter.check("fresh", source, start).is_err());
        assert!(limiter
            .check("fresh", "127.0.0.9".parse().unwrap(), start)
            .is_ok());
    }
}
