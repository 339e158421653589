//! How many samples a sampling method needs to reach a given error: the pure part of the
//! convergence study (`examples/uncertainty_convergence.rs`).
//!
//! A method's error at N samples is measured from R seeded replications against a
//! reference (a much larger MC): for one quantity and one statistic (mean or std),
//! `rms = sqrt(1 / (24 R) sum_r sum_h (s_r(h) - s_ref(h))^2)`, the root mean square over
//! the hours and the replications, in the quantity's unit. The UT's error is the same sum
//! over the hours of its one deterministic estimate (R = 1).

/// The root mean square of `errors` (0 for none).
pub fn rms(errors: impl IntoIterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0u64);
    for e in errors {
        sum += e * e;
        n += 1;
    }
    if n == 0 { 0.0 } else { (sum / n as f64).sqrt() }
}

/// Where a method's error curve meets a target error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reach {
    /// Already at the smallest N of the grid the error is at most the target: the target
    /// is reached with at most this many samples.
    AtMost(f64),
    /// The error crosses the target between two grid points: N found by interpolating
    /// log(error) linearly in log(N).
    Interpolated(f64),
    /// Not reached on the grid: N extrapolated from the largest N with the MC rate
    /// `error ~ 1/sqrt(N)`, i.e. `N_max (error(N_max) / target)^2`.
    Extrapolated(f64),
}

impl Reach {
    /// The sample count (a bound for [`Reach::AtMost`], an estimate otherwise).
    pub fn samples(self) -> f64 {
        match self {
            Reach::AtMost(n) | Reach::Interpolated(n) | Reach::Extrapolated(n) => n,
        }
    }

    /// `at_most`, `interpolated` or `extrapolated`.
    pub fn kind(self) -> &'static str {
        match self {
            Reach::AtMost(_) => "at_most",
            Reach::Interpolated(_) => "interpolated",
            Reach::Extrapolated(_) => "extrapolated",
        }
    }
}

/// The N at which `curve` ((N, error) in increasing N, errors positive) first reaches
/// `target`; `None` for an empty curve or a target that is not positive and finite.
pub fn samples_to_reach(curve: &[(f64, f64)], target: f64) -> Option<Reach> {
    if !(target.is_finite() && target > 0.0) {
        return None;
    }
    let &(n0, e0) = curve.first()?;
    if e0 <= target {
        return Some(Reach::AtMost(n0));
    }
    for w in curve.windows(2) {
        let ((na, ea), (nb, eb)) = (w[0], w[1]);
        if eb <= target {
            let t = (ea.ln() - target.ln()) / (ea.ln() - eb.ln());
            return Some(Reach::Interpolated(
                (na.ln() + t * (nb.ln() - na.ln())).exp(),
            ));
        }
    }
    let &(n, e) = curve.last()?;
    Some(Reach::Extrapolated(n * (e / target).powi(2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_of_known_values() {
        assert_eq!(rms([3.0, -4.0]), (12.5f64).sqrt());
        assert_eq!(rms(std::iter::empty()), 0.0);
    }

    #[test]
    fn an_exact_root_n_curve_is_inverted_exactly() {
        // error = 10 / sqrt(N) on 100, 400, 1600: error 0.5 is reached at N = 400 exactly,
        // error 0.35 at N = (10 / 0.35)^2 (log-log linear between 400 and 1600).
        let curve: Vec<(f64, f64)> = [100.0, 400.0, 1600.0]
            .iter()
            .map(|&n: &f64| (n, 10.0 / n.sqrt()))
            .collect();
        let r = samples_to_reach(&curve, 0.35).expect("curve");
        assert_eq!(r.kind(), "interpolated");
        assert!((r.samples() - (10.0f64 / 0.35).powi(2)).abs() < 1e-9 * r.samples());
        let r = samples_to_reach(&curve, 0.5).expect("curve");
        assert!((r.samples() - 400.0).abs() < 1e-9);
        // Below the grid: reached at the first point already.
        assert_eq!(samples_to_reach(&curve, 2.0), Some(Reach::AtMost(100.0)));
        // Beyond: 1600 (0.25 / 0.1)^2 = 10 000, which is exact for this curve.
        let r = samples_to_reach(&curve, 0.1).expect("curve");
        assert_eq!(r.kind(), "extrapolated");
        assert!((r.samples() - 10_000.0).abs() < 1e-6);
        assert!(samples_to_reach(&curve, 0.0).is_none());
        assert!(samples_to_reach(&[], 1.0).is_none());
    }
}
