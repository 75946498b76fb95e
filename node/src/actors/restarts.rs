//! How a supervisor restarts a failed child: after a back-off that doubles with each
//! recent failure of the same child (100 ms, 200 ms, ... up to 10 s), and at most
//! `max_restarts` times in `window` across all its children. Past that the supervisor
//! gives up and fails itself, so that its own supervisor deals with it; the root, which
//! has none, stops the node with an error for the process supervisor (systemd) to restart.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The restart intensity: at most this many restarts ...
    pub max_restarts: usize,
    /// ... within this window.
    pub window: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            max_restarts: 10,
            window: Duration::from_secs(60),
        }
    }
}

/// What to do with a child that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Start it again after this back-off.
    After(Duration),
    /// Too many restarts in the window: the supervisor fails itself.
    GiveUp { restarts: usize },
}

/// A supervisor's memory of recent restarts.
#[derive(Debug, Default)]
pub struct Restarts {
    policy: RestartPolicy,
    recent: VecDeque<Instant>,
    /// Each child's recent failures (within the window) and the last one's time.
    by_child: BTreeMap<String, (u32, Instant)>,
}

impl Restarts {
    pub fn new(policy: RestartPolicy) -> Self {
        Self {
            policy,
            ..Self::default()
        }
    }

    /// Records that `child` failed at `now` and says what to do.
    pub fn failed(&mut self, child: &str, now: Instant) -> Restart {
        let window = self.policy.window;
        while self
            .recent
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) > window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.policy.max_restarts {
            return Restart::GiveUp {
                restarts: self.recent.len(),
            };
        }
        self.recent.push_back(now);
        // Children that have not failed within the window start over (and are forgotten).
        self.by_child
            .retain(|_, (_, last)| now.saturating_duration_since(*last) <= window);
        let failures = self.by_child.get(child).map_or(1, |(count, _)| count + 1);
        self.by_child.insert(child.to_string(), (failures, now));
        let doublings = failures.saturating_sub(1).min(16);
        let backoff = self
            .policy
            .first_backoff
            .saturating_mul(1 << doublings)
            .min(self.policy.max_backoff);
        Restart::After(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_child_and_the_intensity_limit_gives_up() {
        let policy = RestartPolicy {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_restarts: 5,
            window: Duration::from_secs(60),
        };
        let mut restarts = Restarts::new(policy);
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        assert_eq!(
            restarts.failed("a", at(0)),
            Restart::After(Duration::from_millis(100))
        );
        assert_eq!(
            restarts.failed("a", at(1)),
            Restart::After(Duration::from_millis(200))
        );
        assert_eq!(
            restarts.failed("a", at(2)),
            Restart::After(Duration::from_millis(350))
        );
        // Another child starts from the first back-off.
        assert_eq!(
            restarts.failed("b", at(3)),
            Restart::After(Duration::from_millis(100))
        );
        assert_eq!(
            restarts.failed("b", at(4)),
            Restart::After(Duration::from_millis(200))
        );
        // Five restarts within the minute: the sixth failure is one too many.
        assert_eq!(restarts.failed("c", at(5)), Restart::GiveUp { restarts: 5 });
        // Once the window has passed, restarts resume, and a child's count starts over.
        assert_eq!(
            restarts.failed("a", at(200)),
            Restart::After(Duration::from_millis(100))
        );
    }
}
