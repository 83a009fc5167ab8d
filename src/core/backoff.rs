//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// An exponential backoff schedule: `initial * factor^attempt`, capped at `max`, each delay
/// spread by up to `jitter` (a fraction, e.g. `0.2` for +-20%) so that peers that lost each
/// other at the same moment do not all come back at the same moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    factor: f64,
    max: Duration,
    jitter: f64,
}

impl Backoff {
    /// A schedule starting at `initial`, multiplied by `factor` per attempt, never above `max`.
    ///
    /// `factor` below 1 is taken as 1; jitter defaults to 0.2 (see [`Backoff::with_jitter`]).
    pub fn new(initial: Duration, factor: f64, max: Duration) -> Self {
        Self {
            initial,
            factor: if factor.is_finite() && factor >= 1.0 {
                factor
            } else {
                1.0
            },
            max: max.max(initial),
            jitter: 0.2,
        }
    }

    /// Spreads every delay uniformly by +-`jitter` of its value (clamped to `0.0..=1.0`).
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// The first delay, before jitter.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The largest delay, before jitter.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before the attempt with index `attempt` (0 for the first), jittered with `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        let spread = if self.jitter > 0.0 {
            rng.gen_range(-self.jitter..=self.jitter)
        } else {
            0.0
        };
        // A delay too long to represent once jittered (a configured maximum near
        // `Duration::MAX`) is the unjittered one: never a panic.
        Duration::try_from_secs_f64((base * (1.0 + spread)).max(0.0))
            .unwrap_or_else(|_| self.base_delay(attempt))
    }

    /// The delay before the attempt with index `attempt`, without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        // Exponent capped so the float never overflows; the cap on `max` does the rest.
        let growth = self.factor.powi(attempt.min(64) as i32);
        let secs = self.initial.as_secs_f64() * growth;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::try_from_secs_f64(secs).unwrap_or(self.max)
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{rngs::StdRng, SeedableRng};

    use super::*;

    #[test]
    fn grows_then_caps() {
        let b = Backoff::new(Duration::from_secs(1), 2.0, Duration::from_secs(10));
        assert_eq!(b.base_delay(0), Duration::from_secs(1));
        assert_eq!(b.base_delay(1), Duration::from_secs(2));
        assert_eq!(b.base_delay(3), Duration::from_secs(8));
        assert_eq!(b.base_delay(4), Duration::from_secs(10));
        assert_eq!(b.base_delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn jitter_stays_within_bounds() {
        let b =
            Backoff::new(Duration::from_secs(10), 1.0, Duration::from_secs(10)).with_jitter(0.2);
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..1000 {
            let d = b.delay(0, &mut rng);
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }

    #[test]
    fn nonsense_parameters_are_tamed() {
        let b = Backoff::new(Duration::from_secs(5), f64::NAN, Duration::from_secs(1))
            .with_jitter(f64::INFINITY);
        assert_eq!(b.max(), Duration::from_secs(5));
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(b.delay(9, &mut rng), Duration::from_secs(5));
    }
}
