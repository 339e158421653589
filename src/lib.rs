//! p2pmarket: a research engine for secured peer-to-peer energy markets.
//!
//! A microgrid trades power with the IEEE RTS-24 smart grid over 24 hours; the price and
//! power of each hour are negotiated by the Relaxed Consensus + Innovations (RCI)
//! algorithm and checked against centralized optima solved by a QP solver.
//!
//! Module map (where to look):
//! - [`data`]: MATPOWER case reader and the RTS-79 load model (embedded defaults).
//! - [`microgrid`]: component models of eq. (20)-(28) and default weather profiles.
//! - [`grid`]: the smart grid's DC network, dispatch rows and exact offer curve.
//! - [`offer`]: the flat offer-curve representation every backend evaluates.
//! - [`rci`]: the RCI negotiation of one hour (the f64 CPU reference).
//! - [`attack`]: false-data-injection attacks on the negotiation and the ledger's defence.
//! - [`central`]: the centralized QP references (hourly and 24-h).
//! - [`input`]: reading the user's input files as text, with one clear error each.
//! - [`scenario`]: the one settings struct, read from TOML and validated.
//! - [`ledger`]: signed messages in validator-signed blocks, and verification of a stored
//!   ledger (pure).
//! - [`market`]: assembles a market from a scenario and runs the day.
//! - [`engine`]: batches of perturbed days on the rayon CPU backend or the WGSL GPU kernel.
//! - [`output`]: Parquet tables, summary JSON and plots of a run, written atomically.
//! - [`sweep`]: parameter sweeps (TOML) run part by part into resumable Parquet datasets.
//! - [`uncertainty`]: the uncertainty model, sigma points, MC/QMC/LHS samplers and
//!   streaming statistics (pure).

// Range checks are written `!(lo < x)` on purpose: NaN must fail them.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod attack;
pub mod central;
pub mod cli_docs;
pub mod data;
pub mod engine;
pub mod error;
pub mod grid;
pub mod input;
pub mod ledger;
pub mod market;
pub mod microgrid;
pub mod offer;
pub mod output;
pub mod rci;
pub mod scenario;
pub mod sweep;
pub mod timeseries;
pub mod uncertainty;

pub use error::{Error, Result};
