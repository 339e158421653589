//! The `p2pmarket` command line: parses flags, builds a validated plan, runs it, prints.
//! Exit codes: 0 success, 2 bad input (nothing written), 1 any other failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use p2pmarket::Error;
use p2pmarket::market::{self, DayResult, Market};
use p2pmarket::scenario::Scenario;

#[derive(Parser)]
#[command(
    name = "p2pmarket",
    version,
    about = "Secured peer-to-peer energy market engine (RCI consensus vs centralized QP)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the 24-h P2P market and both centralized references; write Parquet, JSON, plots.
    Run {
        /// Scenario TOML file; without it the embedded default (RTS-24, RTS-79 peak day,
        /// default microgrid) runs.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output directory (replaced atomically when the run completes).
        #[arg(long, default_value = "out")]
        out: PathBuf,
    },
    /// Validate a scenario file and print the effective scenario; writes nothing.
    Check {
        /// Scenario TOML file.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

/// Failure classes of the command, mapped to exit codes.
enum Failure {
    BadInput(Error),
    Other(anyhow::Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput { .. } | Error::Scenario { .. } | Error::Matpower { .. } => {
                Failure::BadInput(e)
            }
            other => Failure::Other(other.into()),
        }
    }
}

fn load_scenario(config: Option<&Path>) -> Result<Scenario, Failure> {
    match config {
        None => Ok(Scenario::default()),
        Some(p) => Ok(Scenario::from_file(p)?),
    }
}

fn run(config: Option<&Path>, out: &Path) -> Result<(), Failure> {
    let scenario = load_scenario(config)?;
    let market = Market::from_scenario(&scenario)?;
    let day = market::run_day(&market, scenario.output.keep_trajectories)?;
    let extra = serde_json::json!({
        "p2pmarket_version": env!("CARGO_PKG_VERSION"),
        "backend": "cpu-f64-reference",
    });
    let files = p2pmarket::output::write_run(out, &scenario, &day, extra)?;
    print_report(&day);
    println!("\nwrote {} files to {}", files.len(), out.display());
    Ok(())
}

fn print_report(day: &DayResult) {
    println!(
        "hour  load_MW  conv  iter   price_$/MWh  ref_price  exchange_MW  ref_exchange  24h_exchange"
    );
    for h in &day.hours {
        println!(
            "{:>4} {:>8.1} {:>5} {:>5} {:>13.4} {:>10.4} {:>12.4} {:>13.4} {:>13.4}",
            h.hour,
            h.system_load_mw,
            if h.p2p.outcome.converged { "yes" } else { "NO" },
            h.p2p.outcome.iterations,
            h.p2p.price,
            h.hourly_reference.price,
            h.p2p.exchange_mw,
            h.hourly_reference.exchange_mw,
            h.horizon_reference.exchange_mw,
        );
    }
    let s = &day.summary;
    println!();
    println!(
        "converged hours              {}/{}",
        s.converged_hours,
        day.hours.len()
    );
    println!(
        "iterations (max / mean)      {} / {:.1}",
        s.iterations_max, s.iterations_mean
    );
    println!("P2P total cost               {:.2} $", s.p2p_total_cost);
    println!(
        "hourly reference cost        {:.2} $",
        s.central_hourly_total_cost
    );
    println!(
        "24-h co-optimization cost    {:.2} $",
        s.central_24h_total_cost
    );
    println!(
        "max power deviation          {:.3e} %",
        s.max_power_deviation_pct
    );
    println!("cost gap vs hourly reference {:.3e} %", s.cost_gap_pct);
    println!(
        "co-optimization advantage    {:.4} %",
        s.co_optimization_advantage_pct
    );
    println!("runtime                      {:.2} s", s.runtime_s);
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run { config, out } => run(config.as_deref(), out),
        Command::Check { config } => load_scenario(config.as_deref()).and_then(|s| {
            Market::from_scenario(&s)?;
            print!(
                "{}",
                toml::to_string_pretty(&s).map_err(|e| Failure::Other(e.into()))?
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::BadInput(e)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
