//! Which chunk query a policy server answers next, and which it refuses at once. A robot asks for one chunk at a
//! time and only its newest request matters, so the server keeps one waiting query per robot (an older one from
//! the same robot is refused as superseded), serves at most `max_robots` robots (a query from one more is
//! refused; a robot silent for [`FORGET_AFTER`] gives its place up), answers the longest-waiting robot first, and
//! refuses a query that has waited past `max_wait` (its robot has stopped waiting for it). A robot that floods the server therefore holds one place in the queue, as
//! any other robot does, and cannot starve the rest.

use std::time::Duration;

/// A robot that has sent nothing for this long no longer counts among the robots served (a restarted robot
/// comes back as a new one).
pub const FORGET_AFTER: Duration = Duration::from_secs(10);

/// Why a query is refused without being sampled.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// A newer query from the same robot arrived while this one waited.
    Superseded,
    /// The server already serves its most robots.
    TooManyRobots(usize),
    /// It waited longer than the limit.
    Overloaded {
        /// How long it waited, in milliseconds.
        waited_ms: f64,
        /// The limit, in milliseconds.
        limit_ms: f64,
    },
    /// Its payload is larger than any valid query for this policy.
    TooLarge {
        /// Its size.
        bytes: usize,
        /// The largest valid query.
        limit: usize,
    },
    /// More queries arrived at once than the server's queue holds.
    QueueFull(usize),
}

impl Refusal {
    /// The refusal's kind, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Superseded => "superseded",
            Refusal::TooManyRobots(_) => "too_many_robots",
            Refusal::Overloaded { .. } => "overloaded",
            Refusal::TooLarge { .. } => "too_large",
            Refusal::QueueFull(_) => "queue_full",
        }
    }

    /// What the robot is told.
    pub fn message(&self) -> String {
        match self {
            Refusal::Superseded => {
                "refused: superseded by a newer request from the same robot".into()
            }
            Refusal::TooManyRobots(most) => {
                format!("refused: the server already serves its most robots ({most}; --max-robots)")
            }
            Refusal::Overloaded {
                waited_ms,
                limit_ms,
            } => format!(
                "refused: overloaded: the request waited {waited_ms:.0} ms in the queue (at most {limit_ms:.0} ms; \
                 --max-wait-ms)"
            ),
            Refusal::TooLarge { bytes, limit } => format!(
                "refused: a request of {bytes} bytes, larger than any valid query for this policy ({limit} bytes)"
            ),
            Refusal::QueueFull(capacity) => {
                format!("refused: overloaded: {capacity} requests already wait in the queue")
            }
        }
    }
}

/// A waiting query and who sent it.
struct Waiting<T> {
    robot: u32,
    arrived_ns: u64,
    query: T,
}

/// The queries waiting to be answered, at most one per robot.
pub struct Admission<T> {
    waiting: Vec<Waiting<T>>,
    /// The robots served, with when each was last heard.
    robots: Vec<(u32, u64)>,
    max_robots: usize,
    max_wait_ns: u64,
}

impl<T> Admission<T> {
    /// An empty queue serving at most `max_robots` robots and refusing queries older than `max_wait`.
    pub fn new(max_robots: usize, max_wait: Duration) -> Self {
        Admission {
            waiting: Vec::new(),
            robots: Vec::new(),
            max_robots,
            max_wait_ns: max_wait.as_nanos() as u64,
        }
    }

    /// Takes `query`, which arrived from `robot` at `arrived_ns`; returns the query it refuses, if any: the
    /// same robot's older waiting query, or this one from a robot beyond the most.
    pub fn admit(&mut self, robot: u32, arrived_ns: u64, query: T) -> Option<(T, Refusal)> {
        let forget = FORGET_AFTER.as_nanos() as u64;
        self.robots
            .retain(|&(_, heard)| arrived_ns.saturating_sub(heard) < forget);
        let known = self.robots.iter().position(|&(known, _)| known == robot);
        match known {
            Some(index) => self.robots[index].1 = arrived_ns,
            None if self.robots.len() == self.max_robots => {
                return Some((query, Refusal::TooManyRobots(self.max_robots)));
            }
            None => self.robots.push((robot, arrived_ns)),
        }
        let arrived = Waiting {
            robot,
            arrived_ns,
            query,
        };
        match self.waiting.iter_mut().find(|w| w.robot == robot) {
            Some(older) => {
                let older = std::mem::replace(older, arrived);
                Some((older.query, Refusal::Superseded))
            }
            None => {
                self.waiting.push(arrived);
                None
            }
        }
    }

    /// The query to answer now (the one that has waited longest), after moving those that waited past the
    /// limit into `refused`.
    pub fn next(&mut self, now_ns: u64, refused: &mut Vec<(T, Refusal)>) -> Option<T> {
        let limit_ms = self.max_wait_ns as f64 / 1e6;
        let mut kept = Vec::with_capacity(self.waiting.len());
        for waiting in self.waiting.drain(..) {
            let waited_ns = now_ns.saturating_sub(waiting.arrived_ns);
            if waited_ns > self.max_wait_ns {
                let waited_ms = waited_ns as f64 / 1e6;
                refused.push((
                    waiting.query,
                    Refusal::Overloaded {
                        waited_ms,
                        limit_ms,
                    },
                ));
            } else {
                kept.push(waiting);
            }
        }
        self.waiting = kept;
        let oldest = (0..self.waiting.len()).min_by_key(|&i| self.waiting[i].arrived_ns)?;
        Some(self.waiting.remove(oldest).query)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn a_flooding_robot_holds_one_place_and_the_oldest_robot_goes_first() {
        let mut admission = Admission::new(4, Duration::from_millis(500));
        let mut superseded = 0;
        // Robot 7 floods: 100 queries; robot 8 asks once, after robot 7's first.
        assert!(admission.admit(7, 0, "7/0").is_none());
        assert!(admission.admit(8, MS, "8/0").is_none());
        for i in 1..100 {
            let (old, refusal) = admission.admit(7, MS + i, "7/n").unwrap();
            assert_eq!(refusal, Refusal::Superseded);
            assert!(old.starts_with('7'));
            superseded += 1;
        }
        assert_eq!(superseded, 99);
        let mut refused = Vec::new();
        // Robot 7's newest arrived after robot 8's query: robot 8 is served first.
        assert_eq!(admission.next(2 * MS, &mut refused), Some("8/0"));
        assert_eq!(admission.next(2 * MS, &mut refused), Some("7/n"));
        assert_eq!(admission.next(2 * MS, &mut refused), None);
        assert!(refused.is_empty());
    }

    #[test]
    fn stale_queries_and_robots_beyond_the_most_are_refused_with_the_reason() {
        let mut admission = Admission::new(2, Duration::from_millis(100));
        assert!(admission.admit(1, 0, 10).is_none());
        assert!(admission.admit(2, 50 * MS, 20).is_none());
        let (query, refusal) = admission.admit(3, 60 * MS, 30).unwrap();
        assert_eq!((query, refusal.kind()), (30, "too_many_robots"));
        assert!(
            refusal.message().contains("(2; --max-robots)"),
            "{}",
            refusal.message()
        );
        let mut refused = Vec::new();
        assert_eq!(admission.next(120 * MS, &mut refused), Some(20));
        assert_eq!(refused.len(), 1);
        let (query, refusal) = &refused[0];
        assert_eq!(*query, 10);
        assert!(
            refusal.message().contains("waited 120 ms"),
            "{}",
            refusal.message()
        );
        // A robot already served keeps its place among the most; one silent for long gives it up.
        assert!(admission.admit(1, 130 * MS, 11).is_none());
        let later = 130 * MS + FORGET_AFTER.as_nanos() as u64;
        assert!(
            admission
                .admit(1, later, 12)
                .is_some_and(|(q, r)| q == 11 && r == Refusal::Superseded)
        );
        assert!(admission.admit(3, later + MS, 31).is_none());
    }
}
