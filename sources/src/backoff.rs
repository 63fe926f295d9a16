//! The wait before a source (or a ContainerSource's command) is started again: it doubles
//! after each restart up to a ceiling, and starts over once a run lasted longer than the
//! ceiling (it was healthy, not crash-looping).

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RestartBackoff {
    first: Duration,
    ceiling: Duration,
    next: Duration,
}

impl RestartBackoff {
    pub fn new(first: Duration, ceiling: Duration) -> Self {
        Self {
            first,
            ceiling: ceiling.max(first),
            next: first,
        }
    }

    /// The wait before the next start, after a run that lasted `ran_for`.
    pub fn after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for > self.ceiling {
            self.next = self.first;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(self.ceiling);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_ceiling_and_stays_there() {
        let mut b = RestartBackoff::new(50 * MS, 300 * MS);
        let waits: Vec<_> = (0..6).map(|_| b.after_run(Duration::ZERO)).collect();
        assert_eq!(
            waits,
            [50 * MS, 100 * MS, 200 * MS, 300 * MS, 300 * MS, 300 * MS]
        );
    }

    #[test]
    fn starts_over_after_a_run_longer_than_the_ceiling() {
        let mut b = RestartBackoff::new(50 * MS, 300 * MS);
        b.after_run(Duration::ZERO);
        b.after_run(Duration::ZERO);
        assert_eq!(b.after_run(301 * MS), 50 * MS);
        assert_eq!(b.after_run(300 * MS), 100 * MS);
    }

    #[test]
    fn a_ceiling_below_the_first_wait_is_the_first_wait() {
        let mut b = RestartBackoff::new(50 * MS, 10 * MS);
        assert_eq!(b.after_run(Duration::ZERO), 50 * MS);
        assert_eq!(b.after_run(Duration::ZERO), 50 * MS);
    }
}
