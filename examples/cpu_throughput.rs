//! Runs per second of the rayon CPU backend on the benchmark's perturbed runs, with the
//! benchmark's f32-meetable stop tolerances (`bench`) or the market's default ones
//! (`default`): the same work `p2pmarket bench --backend cpu` times, with a choice of
//! tolerances, so two builds can be compared on both.
//!
//! `cargo run --release --example cpu_throughput -- RUNS bench|default`

use std::process::ExitCode;
use std::time::Instant;

use p2pmarket::engine::Batch;
use p2pmarket::engine::bench::bench_runs;
use p2pmarket::engine::cpu::{cpu_runs_per_chunk, run_cpu, run_cpu_streaming};
use p2pmarket::market::Market;
use p2pmarket::scenario::Scenario;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(runs), Some(tol)) = (
        args.first().and_then(|s| s.parse::<usize>().ok()),
        args.get(1).map(String::as_str),
    ) else {
        eprintln!("usage: cpu_throughput RUNS bench|default");
        return ExitCode::FAILURE;
    };
    let market = match Market::from_scenario(&Scenario::default()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut specs = bench_runs(&market, runs.max(1));
    match tol {
        "bench" => {}
        "default" => specs.iter_mut().for_each(|r| r.rci = market.rci.clone()),
        other => {
            eprintln!("unknown tolerances {other:?}: bench or default");
            return ExitCode::FAILURE;
        }
    }
    let batch = match Batch::from_market(&market, &specs) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    // Untimed warm-up: thread start-up and first touches.
    let warm = Batch::from_market(&market, &specs[..1]).map(|b| run_cpu(&b));
    if let Err(e) | Ok(Err(e)) = warm {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let mut iterations = 0u64;
    let start = Instant::now();
    let done = run_cpu_streaming(&batch, cpu_runs_per_chunk(), |c| {
        iterations += c
            .records
            .iter()
            .map(|r| u64::from(r.iterations))
            .sum::<u64>();
        Ok(())
    });
    let seconds = start.elapsed().as_secs_f64();
    if let Err(e) = done {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    println!(
        "tolerances {tol} runs {runs} seconds {seconds:.3} runs_per_s {:.1} hour_iterations_per_run {:.2}",
        runs as f64 / seconds,
        iterations as f64 / runs as f64
    );
    ExitCode::SUCCESS
}
