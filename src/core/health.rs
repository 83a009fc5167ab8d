//! Connection health: RTT, reliability and (when measured) bandwidth, turned into a score in
//! [0, 1] and a category.

use std::{fmt, time::Duration};

use super::peers::Micros;

/// How healthy a connection is, from its score (the mean of the scores that are measured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthCategory {
    /// Score below 0.2.
    Critical,
    /// Score from 0.2.
    Poor,
    /// Score from 0.4.
    Fair,
    /// Score from 0.6.
    Good,
    /// Score from 0.8.
    Excellent,
}

impl HealthCategory {
    /// The category of a score in [0, 1].
    pub fn from_score(score: f64) -> Self {
        match score {
            s if s >= 0.8 => Self::Excellent,
            s if s >= 0.6 => Self::Good,
            s if s >= 0.4 => Self::Fair,
            s if s >= 0.2 => Self::Poor,
            _ => Self::Critical,
        }
    }
}

impl fmt::Display for HealthCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Excellent => "excellent",
            Self::Good => "good",
            Self::Fair => "fair",
            Self::Poor => "poor",
            Self::Critical => "critical",
        })
    }
}

/// The health of one connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Health {
    /// The category of [`score`](Self::score).
    pub category: HealthCategory,
    /// The mean of the measured scores, in [0, 1].
    pub score: f64,
    /// The moving average of the ping RTT.
    pub rtt: Option<Duration>,
    /// Latency score in [0, 1] (from the average RTT).
    pub latency: Option<f64>,
    /// The share of recent pings that succeeded, in [0, 1].
    pub reliability: Option<f64>,
    /// Bandwidth score in [0, 1], when the application measures bandwidth.
    pub bandwidth: Option<f64>,
}

/// How measurements become scores. The defaults suit a wide-area network; tighten them for a
/// data centre.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthScoring {
    pub(crate) good_rtt: Duration,
    pub(crate) bad_rtt: Duration,
    pub(crate) window: u8,
    pub(crate) good_bandwidth: f64,
    pub(crate) rtt_smoothing: f64,
}

impl HealthScoring {
    /// Defaults: latency score 1 at or below 50 ms RTT, 0 at or above 1 s, linear between;
    /// reliability over the last 10 pings; bandwidth score 1 from 1 MB/s; RTT averaged with
    /// weight 0.3 for the newest sample.
    pub fn new() -> Self {
        Self {
            good_rtt: Duration::from_millis(50),
            bad_rtt: Duration::from_secs(1),
            window: 10,
            good_bandwidth: 1_000_000.0,
            rtt_smoothing: 0.3,
        }
    }

    /// The RTT at or below which latency scores 1, and the one at or above which it scores 0.
    pub fn with_rtt_bounds(mut self, good: Duration, bad: Duration) -> Self {
        self.good_rtt = good;
        self.bad_rtt = bad.max(good + Duration::from_millis(1));
        self
    }

    /// How many recent pings the reliability counts (1 to 64).
    pub fn with_window(mut self, pings: u8) -> Self {
        self.window = pings.clamp(1, 64);
        self
    }

    /// The bandwidth (bytes per second) that scores 1. Bandwidth is what the connection
    /// actually moved (see [`crate::bandwidth`]), not its capacity: an idle connection scores
    /// low on it, so opting in ranks busy connections above idle ones.
    pub fn with_good_bandwidth(mut self, bytes_per_second: f64) -> Self {
        if bytes_per_second.is_finite() && bytes_per_second > 0.0 {
            self.good_bandwidth = bytes_per_second;
        }
        self
    }

    /// The weight of the newest RTT sample in the moving average (0 to 1).
    pub fn with_rtt_smoothing(mut self, weight: f64) -> Self {
        if weight.is_finite() {
            self.rtt_smoothing = weight.clamp(0.01, 1.0);
        }
        self
    }

    fn latency_score(&self, rtt: Duration) -> f64 {
        if rtt <= self.good_rtt {
            return 1.0;
        }
        if rtt >= self.bad_rtt {
            return 0.0;
        }
        let span = (self.bad_rtt - self.good_rtt).as_secs_f64();
        1.0 - (rtt - self.good_rtt).as_secs_f64() / span
    }
}

impl Default for HealthScoring {
    fn default() -> Self {
        Self::new()
    }
}

/// What the manager measures on one connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct HealthState {
    /// The average round trip.
    rtt: Option<Micros>,
    /// The most recent ping outcomes, newest in bit 0 (1: success).
    outcomes: u64,
    /// How many outcomes `outcomes` holds (up to the window).
    samples: u8,
    /// Bytes per second (an `f32`: a score needs no more digits, and every connection carries it).
    bandwidth: Option<f32>,
    /// The category last reported.
    pub(crate) category: Option<HealthCategory>,
}

impl HealthState {
    pub(crate) fn record_ping(&mut self, scoring: &HealthScoring, rtt: Option<Duration>) {
        if let Some(sample) = rtt {
            self.rtt = Some(Micros::new(match self.rtt {
                None => sample,
                Some(avg) => {
                    let w = scoring.rtt_smoothing;
                    Duration::from_secs_f64(
                        avg.duration().as_secs_f64() * (1.0 - w) + sample.as_secs_f64() * w,
                    )
                }
            }));
        }
        self.outcomes = (self.outcomes << 1) | u64::from(rtt.is_some());
        self.samples = self.samples.saturating_add(1).min(scoring.window);
    }

    pub(crate) fn record_bandwidth(&mut self, bytes_per_second: f64) {
        if bytes_per_second.is_finite() && bytes_per_second >= 0.0 {
            // A finite rate beyond f32's range becomes infinity, which scores 1 like any rate
            // above the good one.
            self.bandwidth = Some(bytes_per_second as f32);
        }
    }

    /// The current health, if anything was measured yet.
    pub(crate) fn assess(&self, scoring: &HealthScoring) -> Option<Health> {
        let rtt = self.rtt.map(Micros::duration);
        let latency = rtt.map(|rtt| scoring.latency_score(rtt));
        let reliability = (self.samples > 0).then(|| {
            let mask = if self.samples >= 64 {
                u64::MAX
            } else {
                (1u64 << self.samples) - 1
            };
            f64::from((self.outcomes & mask).count_ones()) / f64::from(self.samples)
        });
        let bandwidth = self
            .bandwidth
            .map(|b| (f64::from(b) / scoring.good_bandwidth).min(1.0));
        let measured: Vec<f64> = [latency, reliability, bandwidth]
            .into_iter()
            .flatten()
            .collect();
        if measured.is_empty() {
            return None;
        }
        // A connection whose recent pings all failed has no latency to speak of: it is as bad
        // as it gets, whatever its old RTT average says.
        let score = if reliability == Some(0.0) {
            0.0
        } else {
            measured.iter().sum::<f64>() / measured.len() as f64
        };
        Some(Health {
            category: HealthCategory::from_score(score),
            score,
            rtt,
            latency,
            reliability,
            bandwidth,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn categories_follow_the_thresholds() {
        use HealthCategory::*;
        let cases = [
            (1.0, Excellent),
            (0.8, Excellent),
            (0.79, Good),
            (0.6, Good),
            (0.4, Fair),
            (0.2, Poor),
            (0.19, Critical),
            (0.0, Critical),
        ];
        for (score, category) in cases {
            assert_eq!(HealthCategory::from_score(score), category, "{score}");
        }
    }

    #[test]
    fn latency_score_is_linear_between_the_bounds() {
        let scoring = HealthScoring::new().with_rtt_bounds(ms(100), ms(1100));
        assert_eq!(scoring.latency_score(ms(50)), 1.0);
        assert!((scoring.latency_score(ms(600)) - 0.5).abs() < 1e-9);
        assert_eq!(scoring.latency_score(ms(5000)), 0.0);
    }

    #[test]
    fn fast_reliable_pings_are_excellent_and_failures_drag_it_down() {
        let scoring = HealthScoring::new().with_window(4);
        let mut state = HealthState::default();
        assert!(state.assess(&scoring).is_none(), "nothing measured yet");
        for _ in 0..4 {
            state.record_ping(&scoring, Some(ms(10)));
        }
        let health = state.assess(&scoring).unwrap();
        assert_eq!(health.category, HealthCategory::Excellent);
        assert_eq!(health.reliability, Some(1.0));
        assert_eq!(
            health.bandwidth, None,
            "unmeasured bandwidth is left out, not faked"
        );
        state.record_ping(&scoring, None);
        state.record_ping(&scoring, None);
        let health = state.assess(&scoring).unwrap();
        assert_eq!(health.reliability, Some(0.5));
        assert_eq!(health.category, HealthCategory::Good);
        state.record_ping(&scoring, None);
        state.record_ping(&scoring, None);
        assert_eq!(
            state.assess(&scoring).unwrap().category,
            HealthCategory::Critical,
            "every recent ping failed"
        );
    }

    #[test]
    fn the_rtt_average_moves_gradually_and_bandwidth_joins_the_mean() {
        let scoring = HealthScoring::new().with_rtt_smoothing(0.5);
        let mut state = HealthState::default();
        state.record_ping(&scoring, Some(ms(100)));
        state.record_ping(&scoring, Some(ms(300)));
        assert_eq!(state.assess(&scoring).unwrap().rtt, Some(ms(200)));
        state.record_bandwidth(250_000.0);
        let health = state.assess(&scoring).unwrap();
        assert_eq!(health.bandwidth, Some(0.25));
        let expected = (health.latency.unwrap() + 1.0 + 0.25) / 3.0;
        assert!((health.score - expected).abs() < 1e-9);
    }
}
