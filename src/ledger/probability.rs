//! Attack success probability: the paper's eq. (53)-(55) as printed, and an explicit
//! per-round acceptance model of a tampered message with its analytic value and a seeded
//! Monte Carlo estimate.
//!
//! Erratum 6 (model notes): eq. (55), `P_a = 1/3 (prod_i lambda_i + prod_i eta_i)`, is a
//! product over the per-item success probabilities of the two attack routes; it falls as
//! items are added only because each factor is at most 1, and it says nothing about
//! signatures, validators or quorums. [`paper_attack_probability`] implements it as
//! printed; [`AcceptanceModel`] is the model this project uses instead.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Bounds, Error, Result};

/// Eq. (55) as printed, Kavousi-Fard 2021 (erratum 6: the paper's formula, not a model of
/// this ledger): `P_a = 1/3 (prod_i lambda_i + prod_i eta_i)`, where `lambdas` are the
/// success probabilities of incorrect requests, eq. (53), and `etas` those of data
/// manipulation, eq. (54), each in [0, 1].
pub fn paper_attack_probability(lambdas: &[f64], etas: &[f64]) -> Result<f64> {
    let unit = Bounds::closed(0.0, 1.0, "");
    for (name, values) in [("lambda", lambdas), ("eta", etas)] {
        if values.is_empty() {
            return Err(Error::invalid(
                format!("attack.{name}"),
                "an empty list",
                "at least one probability",
            ));
        }
        for (i, &v) in values.iter().enumerate() {
            unit.check(&format!("attack.{name}[{i}]"), v)?;
        }
    }
    // eq. (53) and (54), Kavousi-Fard 2021.
    let requests: f64 = lambdas.iter().product();
    let manipulation: f64 = etas.iter().product();
    // eq. (55), Kavousi-Fard 2021.
    Ok((requests + manipulation) / 3.0)
}

/// `P(X >= k)` for `X ~ Binomial(n, p)`, summed in log space (no underflow for large n).
pub fn binomial_tail(n: u32, p: f64, k: u32) -> f64 {
    if k == 0 {
        return 1.0;
    }
    if k > n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    // ln C(n, j), built up from ln C(n, 0) = 0.
    let mut ln_choose = 0.0;
    let mut tail = 0.0;
    for j in 0..=n {
        if j >= k {
            tail += (ln_choose + f64::from(j) * lp + f64::from(n - j) * lq).exp();
        }
        if j < n {
            ln_choose += f64::from(n - j).ln() - f64::from(j + 1).ln();
        }
    }
    tail.min(1.0)
}

/// A tampered consensus message against n = 3f + 1 validators, quorum 2f + 1, over `rounds`
/// independent rounds. In each round the adversary submits one tampered message; it passes
/// an honest validator's checks only with a forged signature on content the rule cannot
/// refute (probability `forgery`), and then every validator signs; otherwise only
/// compromised validators sign, each compromised independently with probability
/// `compromise`. The message is accepted in a round when 2f + 1 validators sign:
///
/// `a = q + (1 - q) P(Binomial(n, p) >= 2f + 1)`, and `P_R = 1 - (1 - a)^R` for acceptance
/// in at least one of R rounds. Unlike eq. (55) this grows with R.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AcceptanceModel {
    /// Faults tolerated, f.
    pub faults: u32,
    /// Probability that a validator is compromised in a round, p.
    pub compromise: f64,
    /// Probability that a tampered message passes an honest validator (forged signature), q.
    pub forgery: f64,
    /// Rounds, R.
    pub rounds: u32,
}

impl AcceptanceModel {
    /// A validated model: f <= 10 000, p and q in [0, 1].
    pub fn new(faults: u32, compromise: f64, forgery: f64, rounds: u32) -> Result<Self> {
        let unit = Bounds::closed(0.0, 1.0, "");
        unit.check("attack.compromise", compromise)?;
        unit.check("attack.forgery", forgery)?;
        if faults > super::state::MAX_FAULTS {
            return Err(Error::invalid(
                "attack.faults",
                faults,
                format!("a whole number in 0..={}", super::state::MAX_FAULTS),
            ));
        }
        Ok(AcceptanceModel {
            faults,
            compromise,
            forgery,
            rounds,
        })
    }

    /// Validators, n = 3f + 1.
    pub fn validators(&self) -> u32 {
        3 * self.faults + 1
    }

    /// Quorum, 2f + 1.
    pub fn quorum(&self) -> u32 {
        2 * self.faults + 1
    }

    /// Acceptance probability in one round, `a`.
    pub fn per_round(&self) -> f64 {
        let collusion = binomial_tail(self.validators(), self.compromise, self.quorum());
        self.forgery + (1.0 - self.forgery) * collusion
    }

    /// Acceptance probability in at least one of the R rounds, `1 - (1 - a)^R`.
    pub fn probability(&self) -> f64 {
        let a = self.per_round();
        if a >= 1.0 {
            return if self.rounds > 0 { 1.0 } else { 0.0 };
        }
        -(f64::from(self.rounds) * (-a).ln_1p()).exp_m1()
    }

    /// Fraction of `trials` simulated attacks accepted in at least one round: each round
    /// draws the forgery, then each validator's compromise, from one ChaCha8 stream seeded
    /// with `seed` (the draws of trial t follow those of trial t - 1).
    pub fn monte_carlo(&self, trials: u64, seed: u64) -> f64 {
        if trials == 0 {
            return 0.0;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (n, quorum) = (self.validators(), self.quorum());
        let mut accepted = 0u64;
        for _ in 0..trials {
            for _ in 0..self.rounds {
                let forged = unit_f64(&mut rng) < self.forgery;
                let colluders = (0..n)
                    .filter(|_| unit_f64(&mut rng) < self.compromise)
                    .count() as u32;
                if forged || colluders >= quorum {
                    accepted += 1;
                    break;
                }
            }
        }
        accepted as f64 / trials as f64
    }
}

/// A uniform `f64` in `[0, 1)` from the top 53 bits of one `u64` (independent of `rand`'s
/// distribution code, so the draws cannot change with its version).
fn unit_f64(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_formula_as_printed() {
        // (0.5 * 0.4 + 0.9 * 0.1) / 3
        let p = paper_attack_probability(&[0.5, 0.4], &[0.9, 0.1]).unwrap();
        assert!((p - 0.29 / 3.0).abs() < 1e-15);
        // The printed formula falls as items are added, whatever the items are.
        let more = paper_attack_probability(&[0.5, 0.4, 0.99], &[0.9, 0.1, 0.99]).unwrap();
        assert!(more < p);
        assert!(paper_attack_probability(&[1.5], &[0.1]).is_err());
        assert!(paper_attack_probability(&[f64::NAN], &[0.1]).is_err());
        let e = paper_attack_probability(&[], &[0.1])
            .unwrap_err()
            .to_string();
        assert!(e.contains("attack.lambda"), "{e}");
    }

    #[test]
    fn binomial_tail_matches_enumeration() {
        for n in 0..=9u32 {
            for &p in &[0.0f64, 0.1, 0.37, 0.5, 0.9, 1.0] {
                for k in 0..=n + 1 {
                    // Enumerate the 2^n outcomes.
                    let mut exact = 0.0;
                    for mask in 0u32..(1 << n) {
                        let ones = mask.count_ones();
                        if ones >= k {
                            exact += p.powi(ones as i32) * (1.0 - p).powi((n - ones) as i32);
                        }
                    }
                    let got = binomial_tail(n, p, k);
                    assert!(
                        (got - exact).abs() < 1e-12,
                        "n {n} p {p} k {k}: {got} vs {exact}"
                    );
                }
            }
        }
        // Large n does not underflow: P(Bin(30001, 0.5) >= 15001) is about one half.
        let t = binomial_tail(30_001, 0.5, 15_001);
        assert!((t - 0.5).abs() < 1e-9, "{t}");
    }

    #[test]
    fn analytic_model_by_hand() {
        // f = 1: n = 4, quorum 3; P(Bin(4, 0.3) >= 3) = 4 (0.3^3)(0.7) + 0.3^4 = 0.0837.
        let m = AcceptanceModel::new(1, 0.3, 0.01, 5).unwrap();
        let a = 0.01 + 0.99 * 0.0837;
        assert!((m.per_round() - a).abs() < 1e-15);
        assert!((m.probability() - (1.0 - (1.0f64 - a).powi(5))).abs() < 1e-14);
        let longer = AcceptanceModel { rounds: 50, ..m };
        assert!(longer.probability() > m.probability());
        assert_eq!(AcceptanceModel { rounds: 0, ..m }.probability(), 0.0);
        assert!(AcceptanceModel::new(1, 1.1, 0.0, 1).is_err());
        assert!(AcceptanceModel::new(1, 0.1, -0.1, 1).is_err());
    }

    #[test]
    fn monte_carlo_agrees_with_the_analytic_value() {
        for (m, seed) in [
            (AcceptanceModel::new(1, 0.3, 0.01, 5).unwrap(), 11),
            (AcceptanceModel::new(2, 0.45, 0.0, 3).unwrap(), 12),
            (AcceptanceModel::new(0, 0.2, 0.05, 2).unwrap(), 13),
        ] {
            let trials = 20_000u64;
            let exact = m.probability();
            let estimate = m.monte_carlo(trials, seed);
            // 99 % interval of a binomial proportion (normal approximation).
            let half_width = 2.576 * (exact * (1.0 - exact) / trials as f64).sqrt();
            assert!(
                (estimate - exact).abs() <= half_width,
                "{m:?}: {estimate} vs {exact} +- {half_width}"
            );
            assert!(
                exact > 0.05 && exact < 0.95,
                "{m:?}: {exact} is a weak test"
            );
        }
    }
}
