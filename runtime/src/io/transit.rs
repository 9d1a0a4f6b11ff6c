//! How old an arriving message is, judged from its sender's timestamp rather than from when it arrived.
//!
//! After a network stall, messages sent during the stall arrive together: judged by arrival they look fresh,
//! yet they describe the robot as it was. The sender's clock and ours are not synchronised, so the age cannot
//! be read off the timestamp directly; instead each message's transit (our wall clock at arrival minus the
//! sender's stamp) is compared with the smallest transit seen recently, which is the clock offset plus the
//! fastest delivery. The excess is how much later than the fastest delivery this message came: its age.
//!
//! The smallest transit is kept over a sliding window (two halves of [`WINDOW_HALF_NS`]), so a sender's clock
//! that drifts or is stepped only briefly skews the estimate; the window is advanced only by arrivals, so a
//! backlog after a long stall is still judged against the deliveries before it.

/// Half the window over which the smallest transit is taken, nanoseconds.
pub const WINDOW_HALF_NS: u64 = 5_000_000_000;

/// Estimates the age of each message of one source. Plain arithmetic; no allocation.
#[derive(Debug, Clone, Default)]
pub struct TransitAge {
    /// The smallest transit of the current half window, and of the one before.
    current_min: Option<i128>,
    previous_min: Option<i128>,
    half_started_ns: u64,
}

impl TransitAge {
    /// Forgets the sender (call when another source takes over).
    pub fn reset(&mut self) {
        *self = TransitAge::default();
    }

    /// The age of a message stamped `stamp_ns` by its sender, arriving at `arrival_wall_ns` on our wall clock
    /// and `arrival_ns` on our monotonic clock (which paces the window). A sender that stamps 0 (no clock) gets
    /// age 0: its messages are dated by arrival.
    pub fn age_ns(&mut self, stamp_ns: u64, arrival_wall_ns: u64, arrival_ns: u64) -> u64 {
        if stamp_ns == 0 {
            return 0;
        }
        let transit = i128::from(arrival_wall_ns) - i128::from(stamp_ns);
        if arrival_ns.saturating_sub(self.half_started_ns) >= WINDOW_HALF_NS {
            self.previous_min = self.current_min;
            self.current_min = None;
            self.half_started_ns = arrival_ns;
        }
        let current = self.current_min.map_or(transit, |m| m.min(transit));
        self.current_min = Some(current);
        let fastest = self
            .previous_min
            .map_or(current, |previous| previous.min(current));
        u64::try_from(transit - fastest).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn steady_messages_are_young_and_a_backlog_after_a_stall_is_old() {
        let mut age = TransitAge::default();
        // The sender's clock runs 3 s behind ours; deliveries take 1 to 2 ms.
        let offset = 3_000 * MS;
        for i in 0..100u64 {
            let sent = 1_000_000 * MS + i * 10 * MS;
            let arrived = sent + offset + MS + (i % 2) * MS;
            assert!(age.age_ns(sent, arrived, arrived) <= MS);
        }
        // A stall: a message sent 800 ms ago arrives now.
        let sent = 1_000_000 * MS + 1_000 * MS;
        let arrived = sent + offset + 800 * MS;
        let age_ns = age.age_ns(sent, arrived, arrived);
        assert!((799 * MS..=800 * MS).contains(&age_ns), "{age_ns}");
    }

    #[test]
    fn a_sender_without_a_clock_is_dated_by_arrival() {
        let mut age = TransitAge::default();
        for i in 0..2000u64 {
            let now = 1_000_000 * MS + i * 10 * MS;
            assert_eq!(age.age_ns(0, now, now), 0);
        }
    }

    #[test]
    fn a_drifting_sender_clock_is_forgotten_within_the_window() {
        let mut age = TransitAge::default();
        // A sender whose clock falls 20 ms behind over a minute (a step): after one window, ages are small again.
        let mut worst_late = 0;
        for i in 0..6000u64 {
            let now = i * 10 * MS;
            let skew = if i < 3000 { 0 } else { 20 * MS };
            let a = age.age_ns(now - skew + 1_000_000 * MS, now + 1_000_000 * MS + MS, now);
            if i > 3000 + 1100 {
                worst_late = worst_late.max(a);
            }
        }
        assert!(worst_late <= MS, "{worst_late}");
    }
}
