//! Uncertainty of the numbers a comparison rests on: a mean's 95% interval (percentile
//! bootstrap over the held-out prompts; Efron & Tibshirani 1993, *An Introduction to the
//! Bootstrap*, ch. 13), a paired difference (same prompts, two models) with its interval and a
//! two-sided sign-flip permutation test (Fisher's paired randomization test; Good 2005,
//! *Permutation, Parametric and Bootstrap Tests of Hypotheses*, §3.1), and the smallest paired
//! difference the design could detect (two-sided α = 0.05, power 0.8: (z₀.₉₇₅ + z₀.₈) · sd / √n).
//!
//! Units are those of the values (judge points 0–5 for held-out scores). Every resampling is
//! seeded ([`SEED`]), so a report shows the same interval every time it is rendered.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 4000;
/// Random sign flips when 2ⁿ is too many to enumerate (n > [`EXACT_UP_TO`]).
pub const PERMUTATIONS: usize = 20_000;
/// Largest n whose 2ⁿ sign flips are all enumerated (exact p-value).
pub const EXACT_UP_TO: usize = 16;
/// The seed of every resampling.
pub const SEED: u64 = 20_250_806;
/// z₀.₉₇₅ + z₀.₈₀: a paired difference of this many standard errors is detected with 80%
/// power by a two-sided test at α = 0.05.
pub const DETECTABLE_Z: f64 = 1.959_964 + 0.841_621;

/// A mean with its 95% percentile-bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Interval {
    /// The sample mean.
    pub mean: f64,
    /// 2.5th percentile of the bootstrap means.
    pub low: f64,
    /// 97.5th percentile of the bootstrap means.
    pub high: f64,
    /// Values the mean is over.
    pub n: usize,
}

/// A paired difference `b − a` over the same items.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedDifference {
    /// Mean difference with its 95% bootstrap interval.
    pub interval: Interval,
    /// Two-sided p-value of the sign-flip permutation test (no difference: each pair's sign is
    /// as likely flipped), exact for n ≤ [`EXACT_UP_TO`].
    pub p_value: f64,
    /// The smallest mean difference the design detects with 80% power at α = 0.05:
    /// [`DETECTABLE_Z`] · sd / √n with the differences' own sd, or, when every difference is
    /// the same (two models that score every item alike say nothing about the design's
    /// power), with √(var a + var b), the bound for uncorrelated scores.
    pub detectable: f64,
    /// Every item has the same difference (usually 0: the two models scored each item alike).
    pub constant: bool,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// The `q`-quantile of sorted values (linear interpolation, as NumPy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The mean of `values` and its 95% percentile-bootstrap interval; `None` when empty or not
/// finite.
pub fn mean_interval(values: &[f64]) -> Option<Interval> {
    if values.is_empty() || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let n = values.len();
    let mut rng = ChaCha8Rng::seed_from_u64(SEED);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| (0..n).map(|_| values[rng.gen_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Some(Interval {
        mean: mean(values),
        low: quantile(&means, 0.025),
        high: quantile(&means, 0.975),
        n,
    })
}

/// The mean over seeds of each seed's mean, with a 95% two-level percentile-bootstrap
/// interval: each resample draws seeds with replacement, then values with replacement within
/// each drawn seed, and takes the mean of the drawn seeds' means (Davison & Hinkley 1997,
/// Sec. 3.8, the nested bootstrap for two-stage data), so the interval carries the
/// seed-to-seed spread as well as the prompt-to-prompt one. Every seed weighs the same;
/// `n` counts all values. With few seeds the seed level undercovers as any percentile
/// bootstrap does (two seeds give at most three distinct seed draws). `None` without a
/// non-empty group or with a value that is not finite.
pub fn two_level_interval(groups: &[Vec<f64>]) -> Option<Interval> {
    let groups: Vec<&Vec<f64>> = groups.iter().filter(|g| !g.is_empty()).collect();
    if groups.is_empty() || groups.iter().flat_map(|g| g.iter()).any(|v| !v.is_finite()) {
        return None;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ 0x2_1e7e1);
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let mut sum = 0.0;
            for _ in 0..groups.len() {
                let g = groups[rng.gen_range(0..groups.len())];
                sum += (0..g.len())
                    .map(|_| g[rng.gen_range(0..g.len())])
                    .sum::<f64>()
                    / g.len() as f64;
            }
            sum / groups.len() as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let group_means: Vec<f64> = groups.iter().map(|g| mean(g)).collect();
    Some(Interval {
        mean: mean(&group_means),
        low: quantile(&means, 0.025),
        high: quantile(&means, 0.975),
        n: groups.iter().map(|g| g.len()).sum(),
    })
}

/// The mean of a few values (one per seed) with the 95% Student-t interval, mean ±
/// t₀.₉₇₅,ₙ₋₁ · s / √n (statrs's Student's t): with three seeds a percentile bootstrap has
/// only ten distinct resamples and undercovers, the t interval is the textbook choice for a
/// handful of independent runs. `None` with fewer than 2 values or one not finite.
pub fn seed_interval(values: &[f64]) -> Option<Interval> {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let n = values.len();
    if n < 2 || values.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let m = mean(values);
    let sd = (values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt();
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .ok()?
        .inverse_cdf(0.975);
    let half = t * sd / (n as f64).sqrt();
    Some(Interval {
        mean: m,
        low: m - half,
        high: m + half,
        n,
    })
}

/// Average ranks of `v` (1-based; tied values share the mean of their ranks).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && v[order[end]] == v[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0; // mean of ranks start+1 ..= end
        for &i in &order[start..end] {
            r[i] = rank;
        }
        start = end;
    }
    r
}

/// Spearman's rank correlation of `a` and `b` (`a[i]` with `b[i]`): Pearson's correlation of
/// their average ranks, so ties (a rule judge's 0, 2.5, 5) are handled as `scipy.stats.spearmanr`
/// does. `None` when the lengths differ, fewer than 3 items, a value is not finite, or either
/// side is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 || a.iter().chain(b).any(|x| !x.is_finite()) {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let (ma, mb) = (mean(&ra), mean(&rb));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma).powi(2);
        sbb += (y - mb).powi(2);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// `b − a` item by item (`a[i]` and `b[i]` belong together): the mean difference, its
/// interval, the permutation p-value and the detectable difference. `None` when the lengths
/// differ, nothing is paired or a value is not finite.
pub fn paired_difference(a: &[f64], b: &[f64]) -> Option<PairedDifference> {
    if a.len() != b.len() {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| y - x).collect();
    let interval = mean_interval(&d)?;
    let n = d.len();
    let observed = d.iter().sum::<f64>().abs();
    // A flipped sum at least as far from 0 as the observed one (with a tolerance for float
    // rounding, so ties count as they would exactly).
    let tol = 1e-9 * (1.0 + observed);
    let p_value = if n <= EXACT_UP_TO {
        let total = 1u64 << n;
        let hits = (0..total)
            .filter(|mask| {
                let s: f64 = d
                    .iter()
                    .enumerate()
                    .map(|(i, x)| if mask >> i & 1 == 1 { -x } else { *x })
                    .sum();
                s.abs() >= observed - tol
            })
            .count();
        hits as f64 / total as f64
    } else {
        let mut rng = ChaCha8Rng::seed_from_u64(SEED ^ 0x5eed);
        let hits = (0..PERMUTATIONS)
            .filter(|_| {
                let s: f64 = d
                    .iter()
                    .map(|x| if rng.gen::<bool>() { -x } else { *x })
                    .sum();
                s.abs() >= observed - tol
            })
            .count();
        // The observed assignment counts as one of the permutations (Phipson & Smyth 2010).
        (hits + 1) as f64 / (PERMUTATIONS + 1) as f64
    };
    let var = |v: &[f64]| {
        let m = mean(v);
        if v.len() > 1 {
            v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64
        } else {
            f64::NAN
        }
    };
    let var_d = var(&d);
    let constant = d.iter().all(|x| (x - d[0]).abs() < 1e-12);
    let sd = if constant {
        (var(a) + var(b)).sqrt()
    } else {
        var_d.sqrt()
    };
    Some(PairedDifference {
        interval,
        p_value,
        detectable: DETECTABLE_Z * sd / (n as f64).sqrt(),
        constant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_has_a_zero_width_interval() {
        let i = mean_interval(&[2.5; 10]).unwrap();
        assert_eq!((i.mean, i.low, i.high, i.n), (2.5, 2.5, 2.5, 10));
        assert!(mean_interval(&[]).is_none());
        assert!(mean_interval(&[1.0, f64::NAN]).is_none());
    }

    #[test]
    fn the_interval_covers_the_mean_and_shrinks_with_n() {
        // 0/5 scores, half and half: mean 2.5, standard error 2.5/√n; the percentile
        // interval is close to mean ± 1.96 · se.
        let small: Vec<f64> = (0..20)
            .map(|i| if i % 2 == 0 { 0.0 } else { 5.0 })
            .collect();
        let large: Vec<f64> = (0..200)
            .map(|i| if i % 2 == 0 { 0.0 } else { 5.0 })
            .collect();
        let (s, l) = (
            mean_interval(&small).unwrap(),
            mean_interval(&large).unwrap(),
        );
        assert_eq!(s.mean, 2.5);
        let se = 2.5 / (20f64).sqrt();
        assert!((s.high - s.low - 2.0 * 1.96 * se).abs() < 0.25, "{s:?}");
        assert!(l.high - l.low < (s.high - s.low) / 2.5, "{l:?} vs {s:?}");
    }

    #[test]
    fn exact_permutation_p_values_match_hand_counts() {
        // Differences 1, 1, 1, 1: of the 16 sign patterns only all-plus and all-minus reach
        // |sum| = 4, so p = 2/16.
        let a = [0.0; 4];
        let p = paired_difference(&a, &[1.0; 4]).unwrap();
        assert_eq!(p.p_value, 0.125);
        assert_eq!(p.interval.mean, 1.0);
        // Differences 1, −1: every pattern has |sum| ≥ 0: p = 1.
        let p = paired_difference(&[0.0, 0.0], &[1.0, -1.0]).unwrap();
        assert_eq!(p.p_value, 1.0);
        // Differences 2, 1, 1 (n = 3): |sum| = 4 only for +++ and −−−: 2/8.
        let p = paired_difference(&[0.0; 3], &[2.0, 1.0, 1.0]).unwrap();
        assert_eq!(p.p_value, 0.25);
        assert!(paired_difference(&[0.0], &[1.0, 2.0]).is_none());
    }

    #[test]
    fn identical_scores_fall_back_to_the_uncorrelated_bound() {
        // Both models score 0, 5, 0, 5, …: every difference is 0, so the differences say
        // nothing about power; var a = var b = 6.58 (n = 20), bound 2.80 · √13.16 / √20 ≈ 2.27.
        let a: Vec<f64> = (0..20)
            .map(|i| if i % 2 == 0 { 0.0 } else { 5.0 })
            .collect();
        let p = paired_difference(&a, &a).unwrap();
        assert!(p.constant);
        assert_eq!((p.interval.mean, p.p_value), (0.0, 1.0));
        assert!((p.detectable - 2.27).abs() < 0.01, "{p:?}");
    }

    #[test]
    fn a_clear_difference_is_significant_and_noise_is_not() {
        let a: Vec<f64> = (0..40).map(|i| f64::from(i % 5)).collect();
        let shifted: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, x)| x + 1.0 + 0.1 * (i % 3) as f64)
            .collect();
        let p = paired_difference(&a, &shifted).unwrap();
        assert!(p.p_value < 0.001 && p.interval.low > 0.9, "{p:?}");
        let noise: Vec<f64> = a
            .iter()
            .enumerate()
            .map(|(i, x)| if i % 2 == 0 { x + 0.5 } else { x - 0.5 })
            .collect();
        let p = paired_difference(&a, &noise).unwrap();
        assert!(
            p.p_value > 0.5 && p.interval.low < 0.0 && p.interval.high > 0.0,
            "{p:?}"
        );
        // sd of ±0.5 differences ≈ 0.506, n = 40: detectable ≈ 2.80 · 0.506 / √40 ≈ 0.224.
        assert!((p.detectable - 0.224).abs() < 0.005, "{p:?}");
    }

    #[test]
    fn a_two_level_interval_widens_with_the_spread_between_seeds() {
        // Three seeds of 20 prompts each: the same within-seed noise, seed means 0, 0, 0
        // versus -1, 0, +1. The pooled mean is 0 in both.
        let noise: Vec<f64> = (0..20)
            .map(|i| if i % 2 == 0 { 0.5 } else { -0.5 })
            .collect();
        let shifted = |m: f64| noise.iter().map(|x| x + m).collect::<Vec<f64>>();
        let alike = two_level_interval(&[shifted(0.0), shifted(0.0), shifted(0.0)]).unwrap();
        let apart = two_level_interval(&[shifted(-1.0), shifted(0.0), shifted(1.0)]).unwrap();
        assert!(alike.mean.abs() < 1e-12 && apart.mean.abs() < 1e-12);
        assert_eq!(apart.n, 60);
        let width = |iv: &Interval| iv.high - iv.low;
        // Within-seed only: about 2 · 1.96 · 0.5 / √60 ≈ 0.25. Between seeds adds ±0.8 of
        // seed means.
        assert!(width(&alike) < 0.35, "{alike:?}");
        assert!(width(&apart) > 1.0, "{apart:?}");
        // The pooled one-level interval does not see the seeds: it stays narrow-ish.
        let pooled: Vec<f64> = [shifted(-1.0), shifted(0.0), shifted(1.0)].concat();
        assert!(width(&mean_interval(&pooled).unwrap()) < width(&apart));
        assert!(two_level_interval(&[vec![], vec![]]).is_none());
    }

    #[test]
    fn spearman_matches_hand_computed_values() {
        // Monotone: 1; reversed: -1.
        assert_eq!(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 25.0, 90.0]),
            Some(1.0)
        );
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        // With ties: a = [0, 0, 5, 5] ranks [1.5, 1.5, 3.5, 3.5]; b = [1, 2, 3, 4].
        // Pearson of the ranks: cov 2.0 over √(4 · 5) = 0.894427… (scipy.stats.spearmanr).
        let r = spearman(&[0.0, 0.0, 5.0, 5.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((r - 0.894_427_190_999_915_9).abs() < 1e-12, "{r}");
        assert_eq!(
            spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]),
            None,
            "constant side"
        );
        assert_eq!(spearman(&[1.0, 2.0], &[1.0, 2.0]), None, "too few");
    }

    #[test]
    fn a_seed_interval_is_students_t() {
        // 1, 2, 3: mean 2, s = 1, t(0.975, 2) = 4.302653: 2 ± 2.48414.
        let iv = seed_interval(&[1.0, 2.0, 3.0]).unwrap();
        assert!((iv.mean - 2.0).abs() < 1e-12);
        assert!(
            (iv.high - 2.0 - 4.302_652_729_7 / 3f64.sqrt()).abs() < 1e-6,
            "{iv:?}"
        );
        assert!((iv.low + iv.high - 4.0).abs() < 1e-12);
        assert!(seed_interval(&[1.0]).is_none());
    }
}
