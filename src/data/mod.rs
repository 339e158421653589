//! Input data: MATPOWER case files and the RTS-79 load model, with embedded defaults.

pub mod matpower;
pub mod rts79;

/// MATPOWER's `case24_ieee_rts.m` (BSD-3 licensed data), embedded as the default system.
pub const CASE24_IEEE_RTS: &str = include_str!("../../data/case24_ieee_rts.m");
