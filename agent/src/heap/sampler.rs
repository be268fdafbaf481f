//! The sampling schedule and the weights that make estimates unbiased.
//!
//! As in Go and jemalloc, the bytes a thread allocates are treated as a
//! Poisson process with one point per `mean` bytes on average: the distance
//! to the next point is drawn from an exponential distribution, and an
//! allocation is sampled when a point falls inside it. By memorylessness an
//! allocation of `s` bytes is then sampled with probability
//! `p(s) = 1 - exp(-s / mean)`, independently of every other allocation, and
//! the leftover distance after a sample can be redrawn instead of carried.
//!
//! Each sample stands for `1 / p(s)` allocations and `s / p(s)` bytes (the
//! Horvitz–Thompson estimator). Summed over the samples this is unbiased:
//! `E[sum 1/p(s_i) * [i sampled]] = sum p(s_i) / p(s_i) = n`, and likewise
//! for bytes. Go scales each profile bucket by its *average* object size
//! (`runtime/pprof.scaleHeapSample`), which is exact only when a bucket holds
//! one size; taskscope weighs every sample by its own size, so it stays
//! unbiased for buckets of mixed sizes too. The variance of the byte estimate
//! is `sum s_i^2 (1 - p_i) / p_i`, about `mean * total` for small objects.

/// The default mean distance between samples: 512 KiB, as in Go and jemalloc.
pub const DEFAULT_SAMPLE_BYTES: u64 = 512 * 1024;

/// The longest interval ever drawn. Keeps countdowns far from `i64` overflow
/// whatever sizes are subtracted from them (a `Layout` is at most
/// `isize::MAX` bytes, and anything near that fails to allocate anyway).
pub(crate) const MAX_INTERVAL: i64 = 1 << 60;

/// A small, fast generator (xorshift64*), seeded with splitmix64 so that
/// nearby seeds give unrelated streams. Good enough for sampling; not for
/// anything an adversary can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) const fn new(seed: u64) -> Self {
        // splitmix64 of the seed; never zero, which xorshift cannot leave.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(if z == 0 { 0x2545_F491_4F6C_DD1D } else { z })
    }

    /// The generator's state, to keep it in a `Cell` between uses.
    pub(crate) const fn state(self) -> u64 {
        self.0
    }

    /// A generator resumed from [`state`](Self::state).
    pub(crate) const fn resume(state: u64) -> Self {
        if state == 0 {
            Rng::new(0)
        } else {
            Rng(state)
        }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `(0, 1]`: never 0, so its logarithm is finite.
    pub(crate) fn next_unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Bytes until the next sample: exponential with mean `mean` bytes, or
/// [`MAX_INTERVAL`] when sampling is off (`mean == 0`).
pub(crate) fn next_interval(rng: &mut Rng, mean: u64) -> i64 {
    if mean == 0 {
        return MAX_INTERVAL;
    }
    // `f64::ln` is libm's `log`: no allocation, no lock.
    let x = -rng.next_unit().ln() * mean as f64;
    if x >= MAX_INTERVAL as f64 {
        MAX_INTERVAL
    } else {
        x as i64
    }
}

/// The probability that an allocation of `size` bytes is sampled.
pub(crate) fn probability(size: u64, mean: u64) -> f64 {
    if mean == 0 {
        return 0.0;
    }
    // 1 - exp(-x), precise for small x.
    -(-(size as f64) / mean as f64).exp_m1()
}

/// How many allocations one sample of `size` bytes stands for: `1 / p`.
pub(crate) fn weight(size: u64, mean: u64) -> f64 {
    let p = probability(size, mean);
    if p > 0.0 {
        1.0 / p
    } else {
        0.0
    }
}

/// Runs the allocator's sampling decision over a stream of sizes, exactly as
/// the per-thread countdown does: subtract each size, sample when the
/// countdown goes negative, then redraw.
#[cfg(test)]
pub(crate) struct Countdown {
    rng: Rng,
    mean: u64,
    left: i64,
}

#[cfg(test)]
impl Countdown {
    pub(crate) fn new(seed: u64, mean: u64) -> Self {
        let mut rng = Rng::new(seed);
        let left = next_interval(&mut rng, mean);
        Countdown { rng, mean, left }
    }

    /// Whether an allocation of `size` bytes is sampled.
    pub(crate) fn sampled(&mut self, size: u64) -> bool {
        self.left -= size as i64;
        if self.left >= 0 {
            return false;
        }
        self.left = next_interval(&mut self.rng, self.mean);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEAN: u64 = DEFAULT_SAMPLE_BYTES;

    #[test]
    fn intervals_are_exponential_with_the_configured_mean() {
        let mut rng = Rng::new(1);
        let n = 1_000_000;
        let draws: Vec<f64> = (0..n).map(|_| next_interval(&mut rng, MEAN) as f64).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        // The standard error of the mean is MEAN / sqrt(n) = 0.1% of MEAN;
        // 1% is ten standard errors.
        assert!((mean / MEAN as f64 - 1.0).abs() < 0.01, "mean interval {mean}");
        // An exponential's median is mean * ln 2, and P(X > 3 mean) = e^-3.
        let below_median = draws.iter().filter(|&&d| d < MEAN as f64 * std::f64::consts::LN_2).count();
        assert!((below_median as f64 / n as f64 - 0.5).abs() < 0.005, "{below_median}");
        let tail = draws.iter().filter(|&&d| d > 3.0 * MEAN as f64).count();
        assert!((tail as f64 / n as f64 - (-3f64).exp()).abs() < 0.003, "{tail}");
    }

    #[test]
    fn sampling_off_never_samples() {
        let mut rng = Rng::new(7);
        assert_eq!(next_interval(&mut rng, 0), MAX_INTERVAL);
        assert_eq!(weight(100, 0), 0.0);
        let mut c = Countdown::new(3, 0);
        assert!((0..100_000).all(|_| !c.sampled(1 << 20)));
    }

    #[test]
    fn the_countdown_samples_each_size_with_probability_1_minus_exp() {
        for (size, seed) in [(64u64, 11u64), (100_000, 12), (MEAN, 13), (4 * MEAN, 14)] {
            let mut c = Countdown::new(seed, MEAN);
            let n = 400_000u64;
            let hits = (0..n).filter(|_| c.sampled(size)).count() as f64;
            let p = probability(size, MEAN);
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!(
                (hits - n as f64 * p).abs() < 6.0 * sd + 1.0,
                "size {size}: {hits} samples, expected {} ± {sd}",
                n as f64 * p
            );
        }
    }

    /// The estimator of the allocator, on a stream whose totals are known.
    /// Sizes are mixed (8 B to 4 MiB) so that a per-bucket average-size
    /// scaling would be biased; per-sample weights must not be.
    #[test]
    fn weighted_samples_estimate_totals_without_bias() {
        let sizes: Vec<u64> = (0..2_000_000u64)
            .map(|i| match i % 100 {
                0 => 4 << 20,
                1..=9 => 48_000,
                _ => 8 + (i * 7919) % 500,
            })
            .collect();
        let (true_objects, true_bytes) = (sizes.len() as f64, sizes.iter().sum::<u64>() as f64);
        let (mut var_objects, mut var_bytes) = (0.0, 0.0);
        for &s in &sizes {
            let p = probability(s, MEAN);
            var_objects += (1.0 - p) / p;
            var_bytes += (s as f64).powi(2) * (1.0 - p) / p;
        }
        // Several independent streams; each estimate within 6 standard
        // deviations (a false failure has probability about 2e-9 per stream),
        // and their average within 6 standard deviations of the average.
        let runs = 8;
        let (mut sum_objects, mut sum_bytes) = (0.0, 0.0);
        for seed in 0..runs {
            let mut c = Countdown::new(1000 + seed, MEAN);
            let (mut objects, mut bytes) = (0.0, 0.0);
            for &s in &sizes {
                if c.sampled(s) {
                    let w = weight(s, MEAN);
                    objects += w;
                    bytes += w * s as f64;
                }
            }
            assert!((objects - true_objects).abs() < 6.0 * var_objects.sqrt(), "objects {objects}");
            assert!((bytes - true_bytes).abs() < 6.0 * var_bytes.sqrt(), "bytes {bytes}");
            sum_objects += objects;
            sum_bytes += bytes;
        }
        let k = runs as f64;
        assert!((sum_objects / k - true_objects).abs() < 6.0 * (var_objects / k).sqrt());
        assert!((sum_bytes / k - true_bytes).abs() < 6.0 * (var_bytes / k).sqrt());
        // And the estimate is useful: within 2% of the bytes allocated.
        assert!((sum_bytes / k / true_bytes - 1.0).abs() < 0.02, "{}", sum_bytes / k / true_bytes);
    }

    #[test]
    fn the_generator_is_deterministic_per_seed_and_never_zero() {
        let a: Vec<u64> = {
            let mut r = Rng::new(5);
            (0..4).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::new(5);
            (0..4).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(Rng::new(0).state(), 0);
        assert_eq!(Rng::resume(Rng::new(9).state()), Rng::new(9));
        let mut r = Rng::new(0);
        assert!((0..10_000).all(|_| {
            let u = r.next_unit();
            u > 0.0 && u <= 1.0
        }));
    }
}
