//! Latency statistics of a benchmark run: total, rate, mean, percentiles, max.

use std::fmt;
use std::time::Duration;

/// Summary of one phase of a benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySummary {
    pub requests: usize,
    pub total: Duration,
    pub mean: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl LatencySummary {
    /// Summarises per-request latencies measured over a phase lasting `total`.
    pub fn from_samples(mut samples: Vec<Duration>, total: Duration) -> Self {
        samples.sort_unstable();
        let n = samples.len();
        let pick = |q: f64| -> Duration {
            if n == 0 {
                return Duration::ZERO;
            }
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            samples[rank - 1]
        };
        let sum: Duration = samples.iter().sum();
        LatencySummary {
            requests: n,
            total,
            mean: if n == 0 {
                Duration::ZERO
            } else {
                sum / n as u32
            },
            p50: pick(0.50),
            p99: pick(0.99),
            max: samples.last().copied().unwrap_or_default(),
        }
    }

    /// Requests per second over the phase.
    pub fn rate(&self) -> f64 {
        let secs = self.total.as_secs_f64();
        if secs > 0.0 {
            self.requests as f64 / secs
        } else {
            0.0
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests in {:.3} s = {:.0} req/s; latency mean {:.3} ms, p50 {:.3} ms, \
             p99 {:.3} ms, max {:.3} ms",
            self.requests,
            self.total.as_secs_f64(),
            self.rate(),
            ms(self.mean),
            ms(self.p50),
            ms(self.p99),
            ms(self.max)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let samples = (1..=100).map(Duration::from_millis).collect();
        let s = LatencySummary::from_samples(samples, Duration::from_secs(2));
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(s.mean, Duration::from_micros(50_500));
        assert_eq!(s.rate(), 50.0);
    }

    #[test]
    fn empty_runs_do_not_divide_by_zero() {
        let s = LatencySummary::from_samples(vec![], Duration::ZERO);
        assert_eq!((s.requests, s.rate()), (0, 0.0));
    }
}
