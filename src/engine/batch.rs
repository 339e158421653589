//! The flat, structure-of-arrays batch that every backend evaluates, and its outputs.
//!
//! One *run* is one full market day (every hour), possibly perturbed. The batch holds:
//! - a shared **pool** of `f64` values: base offer curves (`prices`, `exports`, `costs` of
//!   a curve stored back to back, `len` values each) and scalable quadratic units (5 values
//!   each: `c2` $/MW^2h, `c1` $/MWh, `c0` $/h, `pmin` MW, `pmax` MW);
//! - one [`AgentSlot`] per (curve set, hour, agent) saying which pool curve or unit group
//!   an agent answers with, its fixed export and cost, and its trade limits;
//! - per-run perturbations and RCI settings as vectors indexed by run.
//!
//! A *curve set* is one version of the base market for one distinct system-load scale.
//! The smart grid's curve is network-exact (a sequence of DC-OPF solves, see
//! [`crate::grid::curve`]) and far too costly to rebuild per run, so the host builds one
//! set per distinct `load_scale` and runs index it; everything else (renewables, the
//! microgrid's load) is scaled inside every backend from the per-run factors.
//!
//! An agent answers either with a pool curve (the smart grid) or with its unit group plus a
//! fixed export and cost (the microgrid), never both. For a unit agent every backend builds
//! exactly the curve [`OfferCurve::from_units`] builds, from the scaled units, so all
//! backends evaluate the same function (see [`Batch::reference_curves`]).

use std::ops::Range;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::grid::load_table::LoadTable;
use crate::market::Market;
use crate::microgrid::{HOURS, Microgrid};
use crate::offer::{CurveView, OfferCurve, QuadraticUnit};
use crate::rci::{Agent, RciSettings, Residuals, TrajectoryPoint};

/// Most agents one market hour may have (the smart grid and the microgrid).
pub const MAX_AGENTS: usize = 2;
/// Most quadratic units in one agent's unit group (the kernel's curve has twice as many
/// breakpoints).
pub const MAX_UNITS: usize = 4;
/// Filler of the unit arrays a unit group is written to (never read).
pub const UNSET_UNIT: QuadraticUnit = QuadraticUnit {
    c2: 0.0,
    c1: 0.0,
    c0: 0.0,
    pmin: 0.0,
    pmax: 0.0,
};
/// Values per unit in the pool: `c2, c1, c0, pmin, pmax`.
pub const UNIT_STRIDE: usize = 5;
/// Agent flag: the unit group's `pmax` is multiplied by the run's `renewable_scale`.
pub const SCALE_RENEWABLES: u32 = 1;
/// Agent flag: the agent's `load_mw` is multiplied by the run's `mg_load_scale`.
pub const SCALE_LOAD: u32 = 2;
/// Marks a run without per-hour inputs (its `hourly_offset`).
pub const NO_HOURLY: u32 = u32::MAX;

use crate::attack::{AttackShape, AttackVariable, HourAttacks};
pub use crate::attack::{AttackSlot, Defence, MAX_ATTACKS};

/// The perturbation and settings of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    /// Factor on the smart grid's system load of every hour, > 0.
    pub load_scale: f64,
    /// Factor on the microgrid renewables' available power (their `pmax`), >= 0.
    pub renewable_scale: f64,
    /// Factor on the microgrid's load, >= 0.
    pub mg_load_scale: f64,
    /// RCI settings of every hour of the run.
    pub rci: RciSettings,
    /// Keep the per-iteration states of every hour.
    pub trajectory: bool,
    /// The run's attacks ([`crate::attack`]; empty slots have `variable == 0`).
    pub attacks: [AttackSlot; MAX_ATTACKS],
    /// Whether the ledger defends the run's messages.
    pub defence: Defence,
    /// Per-hour inputs replacing the base market's hours (an uncertainty sample); `None`
    /// keeps the base hours, scaled by the factors above.
    pub hourly: Option<Box<HourlyInputs>>,
}

impl Default for RunSpec {
    fn default() -> Self {
        RunSpec {
            load_scale: 1.0,
            renewable_scale: 1.0,
            mg_load_scale: 1.0,
            rci: RciSettings::default(),
            trajectory: false,
            attacks: [AttackSlot::default(); MAX_ATTACKS],
            defence: Defence::Undefended,
            hourly: None,
        }
    }
}

/// The values one run sees in every hour instead of the base market's (issue 7: an
/// uncertainty sample is one realized day).
///
/// - `wind_mw`, `pv_mw`, `tidal_mw` are the renewables' *available* power, MW: what the
///   unit models (eq. 21-23) make of the realized wind speed, irradiance and tidal current
///   ([`HourlyInputs::from_weather`]). They replace the `pmax` of the microgrid's units
///   (in [`crate::market::MicrogridModel::units`]'s order) and are still multiplied by the
///   run's `renewable_scale`.
/// - `mg_load_mw` replaces the microgrid's load (still multiplied by `mg_load_scale`).
/// - `sg_load_mw`, when given, is the smart grid's realized system load of each hour. Its
///   curve is then not rebuilt: it is blended between the two neighbouring levels of a
///   [`LoadTable`] (see [`Batch::from_market_with_table`]); a load outside the table's
///   range is evaluated at the nearest level and flagged
///   ([`Batch::sg_load_out_of_range`]), never extrapolated. `None` keeps the curve set of
///   the run's `load_scale`.
///
/// The microgrid's battery plan is the one the base market made day-ahead on the forecast
/// (a plan fixed before the hourly markets, see [`crate::microgrid::BatteryPlan`]): every
/// sample keeps it, and each realized hour clears with that plan.
///
/// The scalar factors are the special case `hourly = None`: a run with
/// [`HourlyInputs::forecast`] and no `sg_load_mw` gives the same results bit for bit.
#[derive(Debug, Clone, PartialEq)]
pub struct HourlyInputs {
    /// Available wind power per hour, MW, >= 0.
    pub wind_mw: [f64; HOURS],
    /// Available PV power per hour, MW, >= 0.
    pub pv_mw: [f64; HOURS],
    /// Available tidal power per hour, MW, >= 0.
    pub tidal_mw: [f64; HOURS],
    /// Microgrid load per hour, MW, >= 0.
    pub mg_load_mw: [f64; HOURS],
    /// Smart-grid system load per hour, MW, > 0; needs a [`LoadTable`].
    pub sg_load_mw: Option<[f64; HOURS]>,
}

impl HourlyInputs {
    /// The base market's own hours (its forecast): available renewables and the
    /// microgrid's load, and no smart-grid load (the curve set of the run's scale).
    pub fn forecast(market: &Market) -> Self {
        let h = &market.microgrid.hourly;
        HourlyInputs {
            wind_mw: std::array::from_fn(|t| h[t].wind_mw),
            pv_mw: std::array::from_fn(|t| h[t].pv_mw),
            tidal_mw: std::array::from_fn(|t| h[t].tidal_mw),
            mg_load_mw: std::array::from_fn(|t| h[t].load_mw),
            sg_load_mw: None,
        }
    }

    /// The inputs of a realized day: available power from the weather through the
    /// microgrid's unit models (eq. 21-23, with their cut-in, rated and cut-out
    /// branches), wind speed and tidal current in m/s, irradiance in W/m^2, loads in MW.
    pub fn from_weather(
        microgrid: &Microgrid,
        wind_speed_ms: &[f64; HOURS],
        irradiance_wm2: &[f64; HOURS],
        tidal_current_ms: &[f64; HOURS],
        mg_load_mw: [f64; HOURS],
        sg_load_mw: Option<[f64; HOURS]>,
    ) -> Self {
        HourlyInputs {
            wind_mw: wind_speed_ms.map(|v| microgrid.wind.power_mw(v)),
            pv_mw: irradiance_wm2.map(|v| microgrid.pv.power_mw(v)),
            tidal_mw: tidal_current_ms.map(|v| microgrid.tidal.power_mw(v)),
            mg_load_mw,
            sg_load_mw,
        }
    }

    /// Checks every value; the error names `runs[run].hourly.<field>[hour]`.
    fn validate(&self, run: usize) -> Result<()> {
        let series = [
            ("wind_mw", &self.wind_mw),
            ("pv_mw", &self.pv_mw),
            ("tidal_mw", &self.tidal_mw),
            ("mg_load_mw", &self.mg_load_mw),
        ];
        for (field, values) in series {
            if let Some(h) = values.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(Error::invalid(
                    format!("runs[{run}].hourly.{field}[{h}]"),
                    values[h],
                    ">= 0, finite",
                ));
            }
        }
        if let Some(sg) = &self.sg_load_mw
            && let Some(h) = sg.iter().position(|v| !(v.is_finite() && *v > 0.0))
        {
            return Err(Error::invalid(
                format!("runs[{run}].hourly.sg_load_mw[{h}]"),
                sg[h],
                "> 0, finite",
            ));
        }
        Ok(())
    }
}

/// What one run sees in one hour when it has [`HourlyInputs`], as every backend reads it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HourInput {
    /// Base `pmax` of the units of agents flagged [`SCALE_RENEWABLES`], MW (before the
    /// run's `renewable_scale`), in unit order; unused entries 0.
    pub unit_pmax: [f64; MAX_UNITS],
    /// Base load of agents flagged [`SCALE_LOAD`], MW (before `mg_load_scale`).
    pub load_mw: f64,
    /// Index in the batch's slots of this hour's first agent slot: the run's curve set's
    /// (`(set * hours + hour) * agents`) or a load-table level's.
    pub slot_base: u32,
    /// Weight of the next level (the slots at `slot_base + agents`), in [0, 1): a pool
    /// curve's prices, exports and costs are `a + w * (b - a)` breakpoint by breakpoint
    /// (both levels have as many breakpoints, which move affinely with the load between
    /// them, see [`crate::grid::load_table`]). Exactly 0: the level at `slot_base` alone.
    pub sg_weight: f64,
    /// The smart-grid load lay outside the table; the hour ran at the nearest level.
    pub sg_out_of_range: bool,
}

/// Smart-grid curve sets (24 hourly curves per load scale) already built for one market.
/// Bound to the market it was first used with: used with another market it starts empty.
#[derive(Debug, Clone, Default)]
pub struct CurveCache {
    market: Option<[u8; 32]>,
    sets: std::collections::HashMap<u64, Vec<OfferCurve>>,
}

impl CurveCache {
    /// Number of load scales whose curves are held.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// True when no curves are held.
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// Empties the cache when `market` is not the one its curves were built for.
    fn bind(&mut self, market: &Market) {
        let id = market_fingerprint(market);
        if self.market != Some(id) {
            self.sets.clear();
            self.market = Some(id);
        }
    }
}

/// A hash of everything a smart-grid curve depends on: units, lines, network, loads, PCC and
/// tie capacity (bit patterns, so any change gives another fingerprint). SHA-256 over a
/// canonical encoding (a domain tag, then every value as its `f64` bits, little-endian, in
/// this fixed order) rather than `DefaultHasher`, whose output may change between Rust
/// releases: the key means the same in every process and build that compares it.
pub fn market_fingerprint(market: &Market) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"p2pmarket/curve-cache/market/v1");
    let mut f = |x: f64| h.update(x.to_bits().to_le_bytes());
    for u in &market.grid.units {
        for v in [u.c2, u.c1, u.c0, u.pmin, u.pmax, u.bus as f64] {
            f(v);
        }
    }
    for l in &market.grid.lines {
        f(l.limit_mw);
    }
    for b in market.grid.network.branches() {
        for v in [b.from as f64, b.to as f64, b.y, b.shift_flow_mw] {
            f(v);
        }
    }
    f(market.grid.network.slack() as f64);
    market.grid.load_share.iter().for_each(|&v| f(v));
    market.grid.shunt_load_mw.iter().for_each(|&v| f(v));
    market.system_load_mw.iter().for_each(|&v| f(v));
    f(market.pcc as f64);
    f(market.microgrid.tie_capacity_mw);
    h.finalize().into()
}

/// What one agent answers with in one hour of one curve set.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AgentSlot {
    /// Offset of the agent's curve in the pool (prices, then exports, then costs).
    pub curve_offset: u32,
    /// Breakpoints of the pool curve; 0 when the agent answers with its units.
    pub curve_len: u32,
    /// Offset of the agent's first unit in the pool.
    pub unit_offset: u32,
    /// Units in the agent's group, 0..=[`MAX_UNITS`].
    pub unit_count: u32,
    /// [`SCALE_RENEWABLES`] | [`SCALE_LOAD`].
    pub flags: u32,
    /// Export that is not scaled (the battery plan), MW.
    pub fixed_export_mw: f64,
    /// Load subtracted from the fixed export (scaled when [`SCALE_LOAD`]), MW.
    pub load_mw: f64,
    /// Cost of the fixed part (the battery's throughput cost), $/h.
    pub fixed_cost: f64,
    /// Lowest export the duals allow, MW (P_min of eq. 34/36).
    pub min_export: f64,
    /// Highest export the duals allow, MW (P_max of eq. 33/35).
    pub max_export: f64,
}

/// A validated batch of runs over one base market.
#[derive(Debug, Clone)]
pub struct Batch {
    pub(crate) hours: usize,
    pub(crate) agents: usize,
    pub(crate) curve_sets: usize,
    pub(crate) pool: Vec<f64>,
    /// Indexed `(set * hours + hour) * agents + agent`.
    pub(crate) slots: Vec<AgentSlot>,
    pub(crate) load_scale: Vec<f64>,
    pub(crate) renewable_scale: Vec<f64>,
    pub(crate) mg_load_scale: Vec<f64>,
    pub(crate) sg_curve_set: Vec<u32>,
    pub(crate) rci: Vec<RciSettings>,
    pub(crate) trajectory: Vec<bool>,
    pub(crate) attacks: Vec<[AttackSlot; MAX_ATTACKS]>,
    pub(crate) defence: Vec<Defence>,
    /// Per run: index of its first [`HourInput`] in `hourly`, or [`NO_HOURLY`].
    pub(crate) hourly_offset: Vec<u32>,
    /// The [`HourInput`]s of the runs with per-hour inputs, `hours` per run, in run order.
    pub(crate) hourly: Vec<HourInput>,
}

/// The [`HourInput`] rows of the runs with per-hour inputs, and each run's offset into
/// them ([`NO_HOURLY`] for the others). `sg(run, hour)` gives the slot base, blend weight
/// and out-of-range flag of a run's hour.
fn hourly_rows(
    runs: &[RunSpec],
    mut sg: impl FnMut(usize, usize) -> (u32, f64, bool),
) -> Result<(Vec<u32>, Vec<HourInput>)> {
    let mut offsets = Vec::with_capacity(runs.len());
    let mut rows = Vec::new();
    for (r, spec) in runs.iter().enumerate() {
        let Some(h) = &spec.hourly else {
            offsets.push(NO_HOURLY);
            continue;
        };
        if rows.len() + HOURS >= NO_HOURLY as usize {
            return Err(Error::invalid(
                "runs",
                runs.len(),
                format!(
                    "fewer than {} runs with per-hour inputs",
                    NO_HOURLY as usize / HOURS
                ),
            ));
        }
        offsets.push(rows.len() as u32);
        for t in 0..HOURS {
            // The microgrid's unit order (`MicrogridModel::units`): wind, PV, tidal.
            let mut unit_pmax = [0.0; MAX_UNITS];
            unit_pmax[..3].copy_from_slice(&[h.wind_mw[t], h.pv_mw[t], h.tidal_mw[t]]);
            let (slot_base, sg_weight, sg_out_of_range) = sg(r, t);
            rows.push(HourInput {
                unit_pmax,
                load_mw: h.mg_load_mw[t],
                slot_base,
                sg_weight,
                sg_out_of_range,
            });
        }
    }
    Ok((offsets, rows))
}

fn check_scale(run: usize, field: &str, v: f64, zero_ok: bool) -> Result<()> {
    let ok = v.is_finite() && (v > 0.0 || (zero_ok && v == 0.0));
    if ok {
        Ok(())
    } else {
        let allowed = if zero_ok {
            ">= 0, finite"
        } else {
            "> 0, finite"
        };
        Err(Error::invalid(format!("runs[{run}].{field}"), v, allowed))
    }
}

fn validate_run(i: usize, r: &RunSpec, agents: usize) -> Result<()> {
    check_scale(i, "load_scale", r.load_scale, false)?;
    if let Some(h) = &r.hourly {
        h.validate(i)?;
    }
    check_scale(i, "renewable_scale", r.renewable_scale, true)?;
    check_scale(i, "mg_load_scale", r.mg_load_scale, true)?;
    r.rci
        .validate_for_agents(agents)
        .map_err(|e| e.with_field_prefix(&format!("runs[{i}].")))?;
    for (k, a) in r.attacks.iter().enumerate() {
        validate_slot(&format!("runs[{i}].attacks[{k}]"), a, agents)?;
    }
    Ok(())
}

/// Checks one engine attack slot (an empty slot, `variable == 0`, is always valid).
fn validate_slot(field: &str, a: &AttackSlot, agents: usize) -> Result<()> {
    if a.variable == 0 {
        return Ok(());
    }
    if AttackVariable::from_code(a.variable).is_none() {
        return Err(Error::invalid(
            format!("{field}.variable"),
            a.variable,
            "an attack variable code 1..=7",
        ));
    }
    if AttackShape::from_code(a.shape).is_none() {
        return Err(Error::invalid(
            format!("{field}.shape"),
            a.shape,
            "an attack shape code 0..=3",
        ));
    }
    if a.agent as usize >= agents {
        return Err(Error::invalid(
            format!("{field}.agent"),
            a.agent,
            format!("0..{agents} (the batch's agents)"),
        ));
    }
    if a.first > a.last || a.ramp_iterations == 0 || !a.size.is_finite() {
        return Err(Error::invalid(
            field.to_string(),
            format!(
                "first {} last {} ramp_iterations {} size {}",
                a.first, a.last, a.ramp_iterations, a.size
            ),
            "first <= last, ramp_iterations >= 1 and a finite size",
        ));
    }
    Ok(())
}

impl Batch {
    /// Builds a batch over `market` with one run per spec: one curve set per distinct
    /// `load_scale` (the market with `system_load_mw` scaled, its curves rebuilt), the
    /// microgrid as scalable units plus its battery plan and load.
    ///
    /// The battery plan of the base market is kept for every load scale (it is a plan the
    /// microgrid made before the market, not a function of the smart grid's load).
    pub fn from_market(market: &Market, runs: &[RunSpec]) -> Result<Batch> {
        Self::from_market_cached(market, runs, &mut CurveCache::default())
    }

    /// [`Batch::from_market`], reusing the smart-grid curve sets `cache` already holds for
    /// this market (a sweep builds each load scale's curves once, not once per part).
    pub fn from_market_cached(
        market: &Market,
        runs: &[RunSpec],
        cache: &mut CurveCache,
    ) -> Result<Batch> {
        Self::build(market, runs, cache, None)
    }

    /// [`Batch::from_market_cached`] for runs whose [`HourlyInputs`] may give the smart
    /// grid's load of every hour: those hours blend the two neighbouring levels of `table`
    /// (built for this market) instead of rebuilding a curve. The table's levels become
    /// curve sets after the runs' own load scales; a load outside the table runs at its
    /// nearest level and is flagged ([`Batch::sg_load_out_of_range`]). A run with a
    /// smart-grid load must keep `load_scale = 1`.
    pub fn from_market_with_table(
        market: &Market,
        runs: &[RunSpec],
        cache: &mut CurveCache,
        table: &LoadTable,
    ) -> Result<Batch> {
        Self::build(market, runs, cache, Some(table))
    }

    fn build(
        market: &Market,
        runs: &[RunSpec],
        cache: &mut CurveCache,
        table: Option<&LoadTable>,
    ) -> Result<Batch> {
        if runs.is_empty() {
            return Err(Error::invalid("runs", 0, "at least one run"));
        }
        let agents = if market.microgrid.config.enabled {
            2
        } else {
            1
        };
        for (i, r) in runs.iter().enumerate() {
            validate_run(i, r, agents)?;
        }
        let uses_table = |r: &RunSpec| r.hourly.as_ref().is_some_and(|h| h.sg_load_mw.is_some());
        if let Some(table) = table {
            let base = table.base_load_mw();
            if base
                .iter()
                .zip(&market.system_load_mw)
                .any(|(a, b)| a.to_bits() != b.to_bits())
            {
                return Err(Error::invalid(
                    "load table",
                    "a table of another market's system load",
                    "a table built for this market (LoadTable::build)",
                ));
            }
            if let Some(i) = runs
                .iter()
                .position(|r| uses_table(r) && r.load_scale != 1.0)
            {
                return Err(Error::invalid(
                    format!("runs[{i}].load_scale"),
                    runs[i].load_scale,
                    "1 for a run whose hourly.sg_load_mw gives the smart grid's load",
                ));
            }
        }
        // Distinct load scales in order of first appearance, keyed by bit pattern; runs
        // that read the table point at no set (their hours name their slots below).
        let mut scales: Vec<f64> = Vec::new();
        let mut sg_curve_set = Vec::with_capacity(runs.len());
        for r in runs.iter().filter(|r| table.is_none() || !uses_table(r)) {
            if !scales.iter().any(|s| s.to_bits() == r.load_scale.to_bits()) {
                scales.push(r.load_scale);
            }
        }
        for r in runs {
            if table.is_some() && uses_table(r) {
                sg_curve_set.push(u32::MAX);
                continue;
            }
            let set = match scales
                .iter()
                .position(|s| s.to_bits() == r.load_scale.to_bits())
            {
                Some(k) => k,
                None => {
                    scales.push(r.load_scale);
                    scales.len() - 1
                }
            };
            sg_curve_set.push(set as u32);
        }
        let hours = HOURS;
        if let (None, Some(i)) = (table, runs.iter().position(uses_table)) {
            return Err(Error::invalid(
                format!("runs[{i}].hourly.sg_load_mw"),
                "a smart-grid load per hour",
                "none without a load table (Batch::from_market_with_table)",
            ));
        }
        let mg_enabled = market.microgrid.config.enabled;
        let agents = if mg_enabled { 2 } else { 1 };
        // The smart grid's curves of every (set, hour): the costly part, in parallel, for the
        // scales the cache does not hold yet.
        cache.bind(market);
        let missing: Vec<f64> = scales
            .iter()
            .copied()
            .filter(|s| !cache.sets.contains_key(&s.to_bits()))
            .collect();
        let built: Vec<Result<OfferCurve>> = (0..missing.len() * hours)
            .into_par_iter()
            .map(|k| {
                let (set, hour) = (k / hours, k % hours);
                let mut scaled = market.clone();
                // A scale of exactly 1 keeps the base loads bit for bit.
                if missing[set] != 1.0 {
                    for l in scaled.system_load_mw.iter_mut() {
                        *l *= missing[set];
                    }
                }
                let mut curves = scaled.curves(hour)?;
                Ok(curves.swap_remove(0))
            })
            .collect::<Vec<_>>();
        let built = crate::error::in_order(built)?;
        for (set, chunk) in built.chunks(hours).enumerate() {
            cache.sets.insert(missing[set].to_bits(), chunk.to_vec());
        }
        let sg_curves: Vec<&OfferCurve> = scales
            .iter()
            .flat_map(|s| cache.sets[&s.to_bits()].iter())
            .collect();
        let (min_export, max_export) = market.agent_limits();
        let mut pool = Vec::new();
        // The microgrid's units of each hour, shared by every set.
        let mut mg_slots = Vec::with_capacity(hours);
        for hour in 0..hours {
            let units = market.microgrid.units(hour);
            if units.len() > MAX_UNITS {
                return Err(Error::invalid(
                    "microgrid units",
                    units.len(),
                    format!("<= {MAX_UNITS}"),
                ));
            }
            // Fails early on a unit the curve builder rejects (c2 <= 0, pmin > pmax).
            market.microgrid.curve(hour)?;
            let unit_offset = pool.len() as u32;
            for u in &units {
                pool.extend_from_slice(&[u.c2, u.c1, u.c0, u.pmin, u.pmax]);
            }
            let battery = market.microgrid.battery_plan[hour];
            mg_slots.push(AgentSlot {
                curve_offset: 0,
                curve_len: 0,
                unit_offset,
                unit_count: units.len() as u32,
                flags: SCALE_RENEWABLES | SCALE_LOAD,
                fixed_export_mw: battery,
                load_mw: market.microgrid.hourly[hour].load_mw,
                fixed_cost: market.microgrid.config.battery.cost_per_mwh * battery.abs(),
                min_export,
                max_export,
            });
        }
        let mut slots = Vec::with_capacity(scales.len() * hours * agents);
        // A smart-grid curve appended to the pool, and its slot.
        let pooled = |pool: &mut Vec<f64>, c: &OfferCurve| {
            let curve_offset = pool.len() as u32;
            pool.extend_from_slice(&c.prices);
            pool.extend_from_slice(&c.exports);
            pool.extend_from_slice(&c.costs);
            AgentSlot {
                curve_offset,
                curve_len: c.len() as u32,
                min_export,
                max_export,
                ..AgentSlot::default()
            }
        };
        for (k, c) in sg_curves.iter().enumerate() {
            slots.push(pooled(&mut pool, c));
            if mg_enabled {
                slots.push(mg_slots[k % hours]);
            }
        }
        // The table's levels, hour by hour: the slots of level k of hour h (its curve and
        // the microgrid's slot of that hour) at `table_slots[h] + k * agents`.
        let mut table_slots = [0usize; HOURS];
        if let Some(table) = table {
            for (hour, mg_slot) in mg_slots.iter().enumerate() {
                table_slots[hour] = slots.len();
                let levels = table.hour(hour);
                for k in 0..levels.levels() {
                    let c = levels.curve(k);
                    if k + 1 < levels.levels()
                        && levels.blends(k)
                        && levels.curve(k + 1).len() != c.len()
                    {
                        return Err(Error::invalid(
                            format!("load table hour {hour} level {k}"),
                            format!("{} and {} breakpoints", c.len(), levels.curve(k + 1).len()),
                            "as many breakpoints in both levels of a blended interval",
                        ));
                    }
                    slots.push(pooled(&mut pool, c));
                    if mg_enabled {
                        slots.push(*mg_slot);
                    }
                }
            }
        }
        if pool.len() > u32::MAX as usize || slots.len() > u32::MAX as usize {
            return Err(Error::invalid(
                "batch.pool",
                pool.len(),
                "< 2^32 values and slots",
            ));
        }
        let (hourly_offset, hourly) = hourly_rows(runs, |r, hour| {
            let sg_load = runs[r].hourly.as_ref().and_then(|h| h.sg_load_mw);
            match (table, sg_load) {
                (Some(table), Some(load)) => {
                    let load = load[hour];
                    let base = table_slots[hour];
                    let (k, w, outside) = match table.locate(hour, load) {
                        Some((k, w)) => (k, w, false),
                        None => {
                            // Never extrapolated: the nearest level, flagged.
                            let levels = table.hour(hour);
                            let top = load > levels.load_mw(levels.levels() - 1);
                            (if top { levels.levels() - 1 } else { 0 }, 0.0, true)
                        }
                    };
                    ((base + k * agents) as u32, w, outside)
                }
                _ => (
                    ((sg_curve_set[r] as usize * hours + hour) * agents) as u32,
                    0.0,
                    false,
                ),
            }
        })?;
        Ok(Batch {
            hours,
            agents,
            curve_sets: scales.len(),
            pool,
            slots,
            load_scale: runs.iter().map(|r| r.load_scale).collect(),
            renewable_scale: runs.iter().map(|r| r.renewable_scale).collect(),
            mg_load_scale: runs.iter().map(|r| r.mg_load_scale).collect(),
            sg_curve_set,
            rci: runs.iter().map(|r| r.rci.clone()).collect(),
            trajectory: runs.iter().map(|r| r.trajectory).collect(),
            attacks: runs.iter().map(|r| r.attacks).collect(),
            defence: runs.iter().map(|r| r.defence).collect(),
            hourly_offset,
            hourly,
        })
    }

    /// Host bytes each run adds to a batch (its entries in the per-run vectors; the shared
    /// curve pool and slots come on top, once per distinct load scale; a run with
    /// per-hour inputs adds [`Batch::bytes_per_hourly_run`]).
    pub const fn bytes_per_run() -> usize {
        3 * size_of::<f64>()
            + 2 * size_of::<u32>()
            + size_of::<RciSettings>()
            + size_of::<bool>()
            + MAX_ATTACKS * size_of::<AttackSlot>()
            + size_of::<Defence>()
    }

    /// Host bytes a run's [`HourlyInputs`] add to a batch (its [`HourInput`] rows).
    pub const fn bytes_per_hourly_run() -> usize {
        HOURS * size_of::<HourInput>()
    }

    /// The per-hour input of a run's hour, when the run has [`HourlyInputs`].
    pub fn hour_input(&self, run: usize, hour: usize) -> Option<&HourInput> {
        match self.hourly_offset[run] {
            NO_HOURLY => None,
            o => Some(&self.hourly[o as usize + hour]),
        }
    }

    /// True when a run's smart-grid load of an hour lay outside the load table, so the
    /// hour ran at the table's nearest level (the statistics of a study flag or drop it).
    pub fn sg_load_out_of_range(&self, run: usize, hour: usize) -> bool {
        self.hour_input(run, hour)
            .is_some_and(|h| h.sg_out_of_range)
    }

    /// Number of runs.
    pub fn runs(&self) -> usize {
        self.rci.len()
    }

    /// Hours per run.
    pub fn hours(&self) -> usize {
        self.hours
    }

    /// Agents per hour.
    pub fn agents(&self) -> usize {
        self.agents
    }

    /// Number of curve sets (distinct load scales).
    pub fn curve_sets(&self) -> usize {
        self.curve_sets
    }

    /// The system-load scale of a run.
    pub fn load_scale(&self, run: usize) -> f64 {
        self.load_scale[run]
    }

    /// The RCI settings of a run.
    pub fn rci(&self, run: usize) -> &RciSettings {
        &self.rci[run]
    }

    /// The attacks on hour `hour` of run `run`, with the run's defence.
    pub fn hour_attacks(&self, run: usize, hour: usize) -> HourAttacks<'_> {
        HourAttacks::new(&self.attacks[run], hour as u32, self.defence[run])
    }

    /// Whether any run carries an attack.
    pub fn has_attacks(&self) -> bool {
        (0..self.runs()).any(|run| self.run_has_attacks(run))
    }

    /// Whether a run carries an attack (in any hour); when not, no hour of it has one.
    pub fn run_has_attacks(&self, run: usize) -> bool {
        self.attacks[run].iter().any(|a| a.variable != 0)
    }

    /// Whether a run keeps its trajectories.
    pub fn keeps_trajectory(&self, run: usize) -> bool {
        self.trajectory[run]
    }

    /// The slot of an agent in an hour of a run (for a blended pool curve, the lower
    /// level's; see [`Batch::blend_partner`]).
    pub fn slot(&self, run: usize, hour: usize, agent: usize) -> &AgentSlot {
        self.slot_and_input(run, hour, agent).0
    }

    /// [`Batch::slot`] with the hour's [`Batch::hour_input`], looked up once.
    fn slot_and_input(
        &self,
        run: usize,
        hour: usize,
        agent: usize,
    ) -> (&AgentSlot, Option<&HourInput>) {
        let input = self.hour_input(run, hour);
        let base = match input {
            Some(h) => h.slot_base as usize,
            None => (self.sg_curve_set[run] as usize * self.hours + hour) * self.agents,
        };
        (&self.slots[base + agent], input)
    }

    /// For a pool-curve agent whose curve this hour is a blend of two load-table levels:
    /// the upper level's slot and its weight `w` (prices, exports and costs
    /// `a + w * (b - a)`, breakpoint by breakpoint).
    pub fn blend_partner(
        &self,
        run: usize,
        hour: usize,
        agent: usize,
    ) -> Option<(&AgentSlot, f64)> {
        let (s, input) = self.slot_and_input(run, hour, agent);
        self.blend_partner_of(s, input, agent)
    }

    /// [`Batch::blend_partner`] of the agent's slot `s` in an hour with `input`.
    fn blend_partner_of(
        &self,
        s: &AgentSlot,
        input: Option<&HourInput>,
        agent: usize,
    ) -> Option<(&AgentSlot, f64)> {
        let h = input?;
        if h.sg_weight == 0.0 || s.curve_len == 0 {
            return None;
        }
        Some((
            &self.slots[h.slot_base as usize + self.agents + agent],
            h.sg_weight,
        ))
    }

    /// Writes the blend of two pool curves with as many breakpoints into `out`, reusing
    /// its storage: prices, exports and costs `a + w * (b - a)`, breakpoint by breakpoint.
    fn blend_into(&self, lower: &AgentSlot, upper: &AgentSlot, w: f64, out: &mut OfferCurve) {
        let (a, b) = (self.pool_curve(lower), self.pool_curve(upper));
        let mix = |x: &[f64], y: &[f64], to: &mut Vec<f64>| {
            to.clear();
            to.extend(x.iter().zip(y).map(|(&e, &f)| e + w * (f - e)));
        };
        mix(a.prices, b.prices, &mut out.prices);
        mix(a.exports, b.exports, &mut out.exports);
        mix(a.costs, b.costs, &mut out.costs);
    }

    /// The pool curve of a slot, borrowed (the slot must have `curve_len > 0`).
    fn pool_curve(&self, s: &AgentSlot) -> CurveView<'_> {
        let (o, n) = (s.curve_offset as usize, s.curve_len as usize);
        CurveView {
            prices: &self.pool[o..o + n],
            exports: &self.pool[o + n..o + 2 * n],
            costs: &self.pool[o + 2 * n..o + 3 * n],
        }
    }

    /// The scaled units of a unit agent written to the front of `units`, with their count,
    /// the fixed export, MW, and the fixed cost, $/h (see [`Batch::scaled_units`]), without
    /// allocating.
    pub fn scaled_units_into(
        &self,
        run: usize,
        hour: usize,
        agent: usize,
        units: &mut [QuadraticUnit; MAX_UNITS],
    ) -> (usize, f64, f64) {
        let (s, input) = self.slot_and_input(run, hour, agent);
        self.scaled_units_of(run, s, input, units)
    }

    /// [`Batch::scaled_units_into`] of the agent's slot `s` in an hour of `run` with
    /// `input`.
    fn scaled_units_of(
        &self,
        run: usize,
        s: &AgentSlot,
        input: Option<&HourInput>,
        units: &mut [QuadraticUnit; MAX_UNITS],
    ) -> (usize, f64, f64) {
        let renewables = s.flags & SCALE_RENEWABLES != 0;
        let rs = if renewables {
            self.renewable_scale[run]
        } else {
            1.0
        };
        let load = if s.flags & SCALE_LOAD != 0 {
            input.map_or(s.load_mw, |h| h.load_mw) * self.mg_load_scale[run]
        } else {
            s.load_mw
        };
        // `from_market` keeps unit groups within MAX_UNITS.
        let count = s.unit_count as usize;
        for (u, unit) in units.iter_mut().enumerate().take(count) {
            let o = s.unit_offset as usize + u * UNIT_STRIDE;
            let v = &self.pool[o..o + UNIT_STRIDE];
            let pmax = match input {
                Some(h) if renewables => h.unit_pmax[u],
                _ => v[4],
            };
            *unit = QuadraticUnit {
                c2: v[0],
                c1: v[1],
                c0: v[2],
                pmin: v[3],
                pmax: pmax * rs,
            };
        }
        (count, s.fixed_export_mw - load, s.fixed_cost)
    }

    /// The scaled units of a unit agent and its fixed export, MW, as every backend
    /// computes them: `pmax * renewable_scale`, `fixed_export - load * mg_load_scale`, with
    /// the run's [`HourInput`] `pmax` and load in place of the base ones when it has one.
    pub fn scaled_units(
        &self,
        run: usize,
        hour: usize,
        agent: usize,
    ) -> (Vec<QuadraticUnit>, f64, f64) {
        let mut units = [UNSET_UNIT; MAX_UNITS];
        let (count, fixed_export, fixed_cost) =
            self.scaled_units_into(run, hour, agent, &mut units);
        (units[..count].to_vec(), fixed_export, fixed_cost)
    }

    /// The exact CPU offer curves of every agent of a run's hour: the pool curve (blended
    /// between two table levels when [`Batch::blend_partner`] says so), or
    /// [`OfferCurve::from_units`] over the scaled units and fixed part.
    pub fn reference_curves(&self, run: usize, hour: usize) -> Result<Vec<OfferCurve>> {
        (0..self.agents)
            .map(|a| {
                let s = self.slot(run, hour, a);
                if let Some((upper, w)) = self.blend_partner(run, hour, a) {
                    let mut c = OfferCurve::fixed(0.0, 0.0);
                    self.blend_into(s, upper, w, &mut c);
                    Ok(c)
                } else if s.curve_len > 0 {
                    Ok(self.pool_curve(s).to_curve())
                } else {
                    let (units, fixed_export, fixed_cost) = self.scaled_units(run, hour, a);
                    OfferCurve::from_units(&units, fixed_export, fixed_cost)
                }
            })
            .collect()
    }

    /// One agent's curve of [`Batch::reference_curves`] without a copy or an allocation:
    /// the pool curve borrowed, or a blended pool curve or the unit curve rebuilt in
    /// `scratch` (a thread's reused curve, see [`OfferCurve::rebuild_from_units`]) and
    /// borrowed from there.
    pub fn curve<'a>(
        &'a self,
        run: usize,
        hour: usize,
        agent: usize,
        scratch: &'a mut OfferCurve,
    ) -> Result<CurveView<'a>> {
        Ok(self.agent(run, hour, agent, scratch)?.curve)
    }

    /// The RCI agent of (run, hour, agent): its curve as [`Batch::curve`] gives it (built
    /// in `scratch` when it is not borrowed from the pool) and its slot's trade limits,
    /// with the slot looked up once.
    pub fn agent<'a>(
        &'a self,
        run: usize,
        hour: usize,
        agent: usize,
        scratch: &'a mut OfferCurve,
    ) -> Result<Agent<'a>> {
        let (s, input) = self.slot_and_input(run, hour, agent);
        let curve = if let Some((upper, w)) = self.blend_partner_of(s, input, agent) {
            self.blend_into(s, upper, w, scratch);
            scratch.view()
        } else if s.curve_len > 0 {
            self.pool_curve(s)
        } else {
            let mut units = [UNSET_UNIT; MAX_UNITS];
            let (count, fixed_export, fixed_cost) = self.scaled_units_of(run, s, input, &mut units);
            scratch.rebuild_from_units(&units[..count], fixed_export, fixed_cost)?;
            scratch.view()
        };
        Ok(Agent {
            curve,
            min_export: s.min_export,
            max_export: s.max_export,
        })
    }
}

/// The outcome of one hour of one run.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct HourRecord {
    /// Market price: the mean of the agents' local prices, $/MWh.
    pub price: f64,
    /// Power from the smart grid to the microgrid (agent 0's export), MW; 0 with one agent.
    pub exchange_mw: f64,
    /// Each agent's final export, MW (unused entries 0).
    pub agent_power: [f64; MAX_AGENTS],
    /// Each agent's operating cost at its final export, $/h (its curve's
    /// `cost_at_export`; unused entries 0).
    pub agent_cost: [f64; MAX_AGENTS],
    /// RCI iterations performed.
    pub iterations: u32,
    /// All stop rules held before the iteration cap.
    pub converged: bool,
    /// Final residuals.
    pub residuals: Residuals,
    /// Messages an attack altered ([`crate::rci::HourOutcome::tampered`]).
    pub tampered: u32,
    /// Altered messages the ledger rejected.
    pub rejected: u32,
}

/// The kept trajectories of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunTrajectory {
    /// Run index in the batch.
    pub run: usize,
    /// Per hour, the agents' states after every iteration (iteration 0 = the start).
    pub hours: Vec<Vec<TrajectoryPoint>>,
}

/// The device a batch ran on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterInfo {
    /// Adapter name, e.g. `llvmpipe (LLVM 15.0.6, 256 bits)` or `rayon CPU (8 threads)`.
    pub name: String,
    /// Device type (`DiscreteGpu`, `Cpu`, ...).
    pub device_type: String,
    /// Driver name.
    pub driver: String,
    /// Driver details.
    pub driver_info: String,
    /// Graphics backend (`Vulkan`, `Metal`, ..., or `cpu` for the rayon backend).
    pub backend: String,
}

/// Everything a backend returns for a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOutputs {
    /// One record per (run, hour), indexed `run * hours + hour`.
    pub records: Vec<HourRecord>,
    /// Trajectories of the runs that asked for them, in run order.
    pub trajectories: Vec<RunTrajectory>,
    /// Hours per run.
    pub hours: usize,
    /// The device that computed the batch.
    pub adapter: AdapterInfo,
    /// A human-readable notice, e.g. why the batch fell back to the CPU backend.
    pub notice: Option<String>,
}

impl BatchOutputs {
    /// The record of one hour of one run.
    pub fn record(&self, run: usize, hour: usize) -> &HourRecord {
        &self.records[run * self.hours + hour]
    }
}

/// The outputs of consecutive runs of a batch, as the streaming entry points
/// ([`crate::engine::cpu::run_cpu_streaming`], [`crate::engine::GpuContext::run_streaming`])
/// lend them to their callback: in run order, so that a caller can reduce or write a batch
/// far larger than its host memory would hold as one [`BatchOutputs`]. The backend reuses
/// the buffers for the next chunk, so the callback copies what it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct ChunkOutputs {
    /// The runs of the chunk.
    pub runs: Range<usize>,
    /// One record per (run, hour) of the chunk, indexed `(run - runs.start) * hours + hour`.
    pub records: Vec<HourRecord>,
    /// Trajectories of the chunk's runs that asked for them, in run order.
    pub trajectories: Vec<RunTrajectory>,
    /// One summary per run of the chunk, when only those were asked for
    /// ([`crate::engine::GpuContext::run_summaries`]; `records` is then empty), else empty.
    pub summaries: Vec<RunSummary>,
    /// One settlement head per run of the chunk ([`crate::ledger::settlement_head`]),
    /// when they were computed on the device
    /// ([`crate::engine::GpuContext::run_summaries_with_heads`]), else empty.
    pub heads: Vec<crate::ledger::Hash>,
}

/// One run's day reduced over its hours, in hour order: the per-run figures of a sweep's
/// `runs` table, and all that a per-run study reads. [`RunSummary::of`] computes it from the
/// hour records; [`crate::engine::GpuContext::run_summaries`] computes the same on the
/// device (bitwise in f64; in f32 the kernel also sums in f32) and reads back only these.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RunSummary {
    /// Sum of the hours' market prices, $/MWh (their mean times the hours).
    pub price_sum: f64,
    /// Lowest hourly price, $/MWh.
    pub price_min: f64,
    /// Highest hourly price, $/MWh.
    pub price_max: f64,
    /// Energy from the smart grid to the microgrid over the day, MWh (one-hour steps).
    pub exchange_mwh: f64,
    /// Each agent's operating cost summed over the hours, $ (unused entries 0).
    pub agent_cost: [f64; MAX_AGENTS],
    /// Largest |trade balance| of an hour's final iterate, MW.
    pub max_abs_balance: f64,
    /// RCI iterations summed over the hours.
    pub iterations: u32,
    /// Most RCI iterations of one hour.
    pub iterations_max: u32,
    /// Hours whose stop rules held.
    pub converged_hours: u32,
    /// Messages an attack altered, summed over the hours.
    pub tampered: u32,
    /// Altered messages the ledger rejected, summed over the hours.
    pub rejected: u32,
}

impl RunSummary {
    /// The summary of one run's hour records, in hour order: sums start at 0 and add the
    /// hours in order, the extremes start at the first hour (the kernel's `reduce_runs`
    /// does the same operations in the same order).
    pub fn of(hours: &[HourRecord]) -> Self {
        let Some(first) = hours.first() else {
            return RunSummary::default();
        };
        let mut s = RunSummary {
            price_min: first.price,
            price_max: first.price,
            ..RunSummary::default()
        };
        for h in hours {
            s.price_sum += h.price;
            s.price_min = s.price_min.min(h.price);
            s.price_max = s.price_max.max(h.price);
            s.exchange_mwh += h.exchange_mw;
            for (sum, c) in s.agent_cost.iter_mut().zip(&h.agent_cost) {
                *sum += c;
            }
            s.max_abs_balance = s.max_abs_balance.max(h.residuals.balance.abs());
            s.iterations += h.iterations;
            s.iterations_max = s.iterations_max.max(h.iterations);
            s.converged_hours += u32::from(h.converged);
            s.tampered += h.tampered;
            s.rejected += h.rejected;
        }
        s
    }
}

/// Assembles streamed chunks into one [`BatchOutputs`], checking that they arrive in order.
#[derive(Debug)]
pub(crate) struct Collector {
    hours: usize,
    records: Vec<HourRecord>,
    trajectories: Vec<RunTrajectory>,
}

impl Collector {
    pub(crate) fn new(batch: &Batch) -> Self {
        Collector {
            hours: batch.hours(),
            records: Vec::with_capacity(batch.runs() * batch.hours()),
            trajectories: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, chunk: &ChunkOutputs) -> Result<()> {
        let next = self.records.len() / self.hours.max(1);
        if chunk.runs.start != next || chunk.records.len() != chunk.runs.len() * self.hours {
            return Err(Error::Solver {
                problem: "batch engine".into(),
                message: format!(
                    "chunk of runs {:?} with {} records arrived after run {next}",
                    chunk.runs,
                    chunk.records.len()
                ),
            });
        }
        self.records.extend_from_slice(&chunk.records);
        self.trajectories.extend_from_slice(&chunk.trajectories);
        Ok(())
    }

    pub(crate) fn finish(self, adapter: AdapterInfo) -> BatchOutputs {
        BatchOutputs {
            records: self.records,
            trajectories: self.trajectories,
            hours: self.hours,
            adapter,
            notice: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// Any change of what a curve depends on changes the key (its value is pinned in
    /// tests/integration/sweep_shard.rs).
    #[test]
    fn market_fingerprint_is_sensitive() {
        let market = Market::from_scenario(&Scenario::default()).unwrap();
        let mut other = market.clone();
        other.microgrid.tie_capacity_mw += 1.0;
        assert_ne!(market_fingerprint(&market), market_fingerprint(&other));
    }

    /// Hand-computed: three hours, sums from 0 in hour order, extremes from the first.
    #[test]
    fn run_summary_reduces_the_hours_in_order() {
        let hour =
            |price: f64, exchange_mw: f64, cost: [f64; 2], balance: f64, it: u32| HourRecord {
                price,
                exchange_mw,
                agent_cost: cost,
                iterations: it,
                converged: it < 10,
                residuals: crate::rci::Residuals {
                    balance,
                    ..Default::default()
                },
                tampered: it / 4,
                rejected: it / 8,
                ..HourRecord::default()
            };
        let hours = [
            hour(30.0, -2.5, [100.0, 7.0], 1e-7, 3),
            hour(12.5, 4.0, [50.0, -1.0], -3e-7, 12),
            hour(41.0, 0.5, [0.25, 2.0], 2e-7, 8),
        ];
        let s = RunSummary::of(&hours);
        assert_eq!(
            s,
            RunSummary {
                price_sum: 83.5,
                price_min: 12.5,
                price_max: 41.0,
                exchange_mwh: 2.0,
                agent_cost: [150.25, 8.0],
                max_abs_balance: 3e-7,
                iterations: 23,
                iterations_max: 12,
                converged_hours: 2,
                tampered: 5,
                rejected: 2,
            }
        );
        assert_eq!(RunSummary::of(&[]), RunSummary::default());
    }

    #[test]
    fn collector_rejects_chunks_out_of_order_or_short() {
        let market = Market::from_scenario(&Scenario::default()).unwrap();
        let batch = Batch::from_market(&market, &vec![RunSpec::default(); 4]).unwrap();
        let chunk = |runs: Range<usize>, records: usize| ChunkOutputs {
            runs,
            records: vec![HourRecord::default(); records],
            trajectories: Vec::new(),
            summaries: Vec::new(),
            heads: Vec::new(),
        };
        let mut c = Collector::new(&batch);
        c.push(&chunk(0..2, 48)).unwrap();
        let e = c.push(&chunk(3..4, 24)).unwrap_err().to_string();
        assert!(e.contains("3..4") && e.contains("after run 2"), "{e}");
        let e = c.push(&chunk(2..4, 24)).unwrap_err().to_string();
        assert!(e.contains("24 records"), "{e}");
        c.push(&chunk(2..4, 48)).unwrap();
        let out = c.finish(crate::engine::cpu::cpu_adapter_info());
        assert_eq!((out.records.len(), out.hours), (96, 24));
    }

    #[test]
    fn rejects_bad_runs_with_field_names() {
        let market = Market::from_scenario(&Scenario::default()).unwrap();
        let bad = RunSpec {
            renewable_scale: -1.0,
            ..RunSpec::default()
        };
        let e = Batch::from_market(&market, &[RunSpec::default(), bad])
            .unwrap_err()
            .to_string();
        assert!(e.contains("runs[1].renewable_scale"), "{e}");
        let slot = AttackSlot {
            variable: 2,
            hours: 1,
            last: u32::MAX,
            ramp_iterations: 1,
            ..AttackSlot::default()
        };
        for (bad, field) in [
            (
                AttackSlot {
                    variable: 9,
                    ..slot
                },
                "runs[0].attacks[1].variable",
            ),
            (AttackSlot { shape: 4, ..slot }, "runs[0].attacks[1].shape"),
            (AttackSlot { agent: 2, ..slot }, "runs[0].attacks[1].agent"),
            (
                AttackSlot {
                    size: f64::NAN,
                    ..slot
                },
                "runs[0].attacks[1]",
            ),
            (
                AttackSlot {
                    first: 3,
                    last: 2,
                    ..slot
                },
                "runs[0].attacks[1]",
            ),
        ] {
            let mut attacks = [AttackSlot::default(); MAX_ATTACKS];
            attacks[0] = slot;
            attacks[1] = bad;
            let run = RunSpec {
                attacks,
                ..RunSpec::default()
            };
            let e = Batch::from_market(&market, &[run]).unwrap_err().to_string();
            assert!(e.contains(field), "{field}: {e}");
        }
        let mut hourly = HourlyInputs::forecast(&market);
        hourly.pv_mw[13] = f64::NAN;
        let bad = RunSpec {
            hourly: Some(Box::new(hourly.clone())),
            ..RunSpec::default()
        };
        let e = Batch::from_market(&market, &[bad]).unwrap_err().to_string();
        assert!(e.contains("runs[0].hourly.pv_mw[13]"), "{e}");
        hourly.pv_mw[13] = 0.0;
        hourly.sg_load_mw = Some([2000.0; HOURS]);
        let bad = RunSpec {
            hourly: Some(Box::new(hourly)),
            ..RunSpec::default()
        };
        let e = Batch::from_market(&market, &[bad]).unwrap_err().to_string();
        assert!(
            e.contains("runs[0].hourly.sg_load_mw") && e.contains("load table"),
            "{e}"
        );
        let mut bad = RunSpec::default();
        bad.rci.chi = 2.0;
        let e = Batch::from_market(&market, &[bad]).unwrap_err().to_string();
        assert!(e.contains("runs[0].rci.chi"), "{e}");
        assert!(Batch::from_market(&market, &[]).is_err());
    }

    #[test]
    fn curve_cache_is_reused_and_bound_to_its_market() {
        let market = Market::from_scenario(&Scenario::default()).unwrap();
        let run = |scale: f64| RunSpec {
            load_scale: scale,
            ..RunSpec::default()
        };
        let mut cache = CurveCache::default();
        let a = Batch::from_market_cached(&market, &[run(1.0), run(0.9)], &mut cache).unwrap();
        assert_eq!(cache.len(), 2);
        // A second batch with a known and a new scale builds only the new one, and its
        // curves equal those of an uncached build.
        let b = Batch::from_market_cached(&market, &[run(0.9), run(0.95)], &mut cache).unwrap();
        assert_eq!(cache.len(), 3);
        assert_eq!(
            b.reference_curves(0, 7).unwrap(),
            a.reference_curves(1, 7).unwrap()
        );
        let fresh = Batch::from_market(&market, &[run(0.9), run(0.95)]).unwrap();
        assert_eq!(b.pool, fresh.pool);
        // Another market (another PCC) must not see these curves.
        let mut other = Scenario::default();
        other.microgrid.pcc_bus = 8;
        let other = Market::from_scenario(&other).unwrap();
        Batch::from_market_cached(&other, &[run(1.0)], &mut cache).unwrap();
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn unscaled_run_reproduces_the_market_curves() {
        let market = Market::from_scenario(&Scenario::default()).unwrap();
        let batch = Batch::from_market(&market, &[RunSpec::default()]).unwrap();
        assert_eq!(batch.curve_sets(), 1);
        for h in 0..HOURS {
            assert_eq!(
                batch.reference_curves(0, h).unwrap(),
                market.curves(h).unwrap()
            );
        }
    }
}
