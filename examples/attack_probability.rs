//! The attack-success figure (the paper's Fig. 17) beside the ledger's explicit model:
//! `cargo run --release --example attack_probability -- DIR` writes
//! `attack_probability.{png,svg,csv}` into DIR (the committed copy is in `results/ledger/`).
//!
//! - The paper's eq. (53)-(55) as printed (erratum 6): `P_a = 1/3 (prod lambda_i +
//!   prod eta_i)` over the first k iteration data items, each success probability drawn
//!   uniformly in [0.9, 1] (the paper's range), seeded. It falls with k only because every
//!   factor is below 1.
//! - The ledger's model: a tampered message accepted in at least one of R rounds, when
//!   each of n = 3f + 1 validators is compromised with probability p and a quorum of
//!   2f + 1 must sign; an Ed25519 forgery (about 2^-128) is taken as 0. It rises with R.

use std::path::PathBuf;
use std::process::ExitCode;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use p2pmarket::ledger::{AcceptanceModel, paper_attack_probability};
use p2pmarket::output::plots::{ProbabilityLine, write_probability_plot};
use p2pmarket::output::{DirSink, Sink};

/// Iterations (paper) and rounds (model) on the x axis.
const STEPS: u32 = 100;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: attack_probability DIR");
        return ExitCode::from(2);
    };
    match run(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: PathBuf) -> p2pmarket::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut draw =
        |n: u32| -> Vec<f64> { (0..n).map(|_| 0.9 + 0.1 * rng.random::<f64>()).collect() };
    let (lambdas, etas) = (draw(STEPS), draw(STEPS));
    let paper: Vec<(f64, f64)> = (1..=STEPS as usize)
        .map(|k| paper_attack_probability(&lambdas[..k], &etas[..k]).map(|p| (k as f64, p)))
        .collect::<p2pmarket::Result<_>>()?;
    let mut lines = vec![ProbabilityLine {
        label: "paper eq. (55), lambda, eta ~ U[0.9, 1]".into(),
        points: paper,
    }];
    for (faults, compromise) in [(1, 0.3), (1, 0.1), (2, 0.1)] {
        let points = (1..=STEPS)
            .map(|rounds| {
                AcceptanceModel::new(faults, compromise, 0.0, rounds)
                    .map(|m| (f64::from(rounds), m.probability()))
            })
            .collect::<p2pmarket::Result<Vec<_>>>()?;
        lines.push(ProbabilityLine {
            label: format!(
                "ledger, n = {}, quorum {}, p = {compromise}",
                3 * faults + 1,
                2 * faults + 1
            ),
            points,
        });
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| p2pmarket::Error::io(format!("creating {}", dir.display()), e))?;
    let mut sink = DirSink::new(&dir);
    let mut csv = String::from("series,x,probability\n");
    for line in &lines {
        for (x, p) in &line.points {
            csv.push_str(&format!("\"{}\",{x},{p:e}\n", line.label));
        }
    }
    sink.write_bytes("attack_probability.csv", csv.as_bytes())?;
    write_probability_plot(
        &mut sink,
        "attack_probability",
        "Success probability of a tampered message",
        "iterations (paper) / rounds (ledger model)",
        &lines,
        &p2pmarket::output::FigureOptions::default(),
    )?;
    for line in &lines {
        let at = |x: f64| {
            line.points
                .iter()
                .find(|p| p.0 == x)
                .map_or(f64::NAN, |p| p.1)
        };
        println!(
            "{}: {:.3e} at 1, {:.3e} at 10, {:.3e} at {STEPS}",
            line.label,
            at(1.0),
            at(10.0),
            at(f64::from(STEPS))
        );
    }
    Ok(())
}
