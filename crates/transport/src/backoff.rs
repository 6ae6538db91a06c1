//! Reconnect delays: exponential with jitter, capped, reset after a stable link.

use std::time::Duration;

use rand::Rng;

/// Delay schedule for redialing a lost link (agent to gateway, or gateway
/// to a listening agent).
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    current: Duration,
}

impl Backoff {
    /// Starts at `base`, doubles per failure, never exceeds `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        let base = base.max(Duration::from_millis(10));
        let cap = cap.max(base);
        Backoff {
            base,
            cap,
            current: base,
        }
    }

    /// The next delay: the current step with ±20% jitter (so many agents
    /// do not redial in lockstep), clamped to the cap; then doubles the step.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let factor = rng.random_range(0.8..=1.2);
        let delay = self.current.mul_f64(factor).min(self.cap);
        self.current = (self.current * 2).min(self.cap);
        delay
    }

    /// [`Backoff::next_delay`], but no sooner than `asked` (a server's
    /// `Retry-After`) plus up to half of it again, so agents told the same
    /// wait do not all come back at once.
    pub fn next_delay_after(&mut self, rng: &mut impl Rng, asked: Duration) -> Duration {
        let own = self.next_delay(rng);
        own.max(asked.mul_f64(rng.random_range(1.0..=1.5)))
    }

    /// Back to the base delay (after a link stayed up long enough).
    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_servers_retry_after_is_a_floor_with_jitter_above_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let asked = Duration::from_secs(2);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..50 {
            let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(300));
            let d = b.next_delay_after(&mut rng, asked);
            assert!(d >= asked && d <= asked.mul_f64(1.5), "{d:?}");
            seen.insert(d.as_millis() / 100);
        }
        assert!(seen.len() > 3, "spread out: {seen:?}");
        // A longer own step wins over a shorter request.
        let mut b = Backoff::new(Duration::from_secs(60), Duration::from_secs(300));
        assert!(b.next_delay_after(&mut rng, asked) >= Duration::from_secs(48));
    }

    #[test]
    fn doubles_to_the_cap_with_bounded_jitter_and_resets() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_secs(5), Duration::from_secs(300));
        let mut steps = Vec::new();
        for _ in 0..10 {
            steps.push(b.next_delay(&mut rng));
        }
        let nominal = [5u64, 10, 20, 40, 80, 160, 300, 300, 300, 300];
        for (d, n) in steps.iter().zip(nominal) {
            let n = Duration::from_secs(n);
            assert!(
                *d >= n.mul_f64(0.8) && *d <= n.mul_f64(1.2).min(Duration::from_secs(300)),
                "{d:?} vs {n:?}"
            );
        }
        assert!(steps.iter().all(|d| *d <= Duration::from_secs(300)));
        b.reset();
        let d = b.next_delay(&mut rng);
        assert!(d <= Duration::from_secs(6), "reset to base, got {d:?}");
    }

    #[test]
    fn jitter_spreads_agents_apart() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let delays: std::collections::HashSet<_> = (0..20)
            .map(|_| {
                Backoff::new(Duration::from_secs(5), Duration::from_secs(300)).next_delay(&mut rng)
            })
            .collect();
        assert!(delays.len() > 10, "jittered delays differ");
    }
}
