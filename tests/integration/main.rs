//! The integration tests, one binary (`cargo test --release --test integration`): one
//! module per subject, each with its own doc. One binary links the library once instead of
//! once per file. Select a subject with its module path, e.g.
//! `cargo test --release --test integration -- engine_equivalence::`.

mod attack;
mod backend_choice;
mod bad_input;
mod case_library;
mod engine_equivalence;
mod files;
mod large_cases;
mod ledger;
mod ledger_attack;
mod ledger_market;
mod ledger_store;
mod load_table;
mod market;
mod pcc_sweep;
mod support;
mod sweep;
mod sweep_attack;
mod sweep_shard;
mod sweep_verify;
mod uncertainty_study;
