//! [`Pacing`]: when the NatMapping publisher starts its next pass. A shard write costs what the
//! whole shard costs (up to 256 entries: the API server validates, stores and sends the whole
//! object to every watcher, and the gateway diffs it), whatever part of it changed. A change
//! is published at once, unless a burst is under way (the pass before published the changes of
//! `burst` IPAM effects or more): then the publisher waits a multiple of that pass before the
//! next, so that the burst reaches the API in fewer, fuller writes. One client mapping and
//! unmapping endpoints one after the other is not a burst, and waits for nothing. Pure:
//! durations in, a duration out.

use std::time::Duration;

/// How the publisher paces itself under a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pacing {
    /// The pause after a burst's pass, as a multiple of how long that pass took (0: never
    /// pause).
    pub ratio: u32,
    /// The fewest IPAM effects in one pass that make a burst.
    pub burst: u64,
    /// The longest pause, whatever the pass took: the most a burst's last change may wait.
    pub max: Duration,
}

impl Default for Pacing {
    /// Bursts of 8 effects or more; ratio 4 (the publisher busy at most a fifth of a burst),
    /// at most 10 ms.
    fn default() -> Self {
        Pacing {
            ratio: 4,
            burst: 8,
            max: Duration::from_millis(10),
        }
    }
}

impl Pacing {
    /// The pause before the next pass, after one that took `took` and published the changes of
    /// `effects` IPAM effects (the count the IPAM made durable since the pass before).
    pub fn pause(&self, took: Duration, effects: u64) -> Duration {
        if effects < self.burst {
            return Duration::ZERO;
        }
        took.saturating_mul(self.ratio).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn changes_short_of_a_burst_are_published_at_once() {
        let p = Pacing::default();
        for effects in [0, 1, 2, 7] {
            assert_eq!(p.pause(3 * MS, effects), Duration::ZERO, "{effects}");
        }
    }

    #[test]
    fn a_burst_waits_a_multiple_of_the_pass_up_to_the_bound() {
        let p = Pacing::default();
        assert_eq!(p.pause(MS, 8), 4 * MS);
        assert_eq!(p.pause(2 * MS, 500), 8 * MS);
        assert_eq!(p.pause(5 * MS, 500), 10 * MS);
        assert_eq!(p.pause(Duration::MAX, 500), 10 * MS);
    }

    #[test]
    fn ratio_zero_never_pauses() {
        let p = Pacing {
            ratio: 0,
            burst: 1,
            max: Duration::from_secs(1),
        };
        assert_eq!(p.pause(5 * MS, 500), Duration::ZERO);
    }
}
