//! The run list of a sweep: the cartesian product of the grid values times `samples`
//! uniform draws, in a fixed order, each run's draws taken from its own ChaCha stream.
//!
//! Run `i = grid_point * samples + sample`. The grid point is decoded in mixed radix over
//! the grid dimensions in the order of [`SweepSpec`]'s parameters (`pcc_bus` outermost,
//! so each bus is one contiguous range of runs; `rci.max_iterations` fastest). Run `i`
//! draws its uniform parameters, in that same order, from `ChaCha8Rng::seed_from_u64(seed)`
//! on stream `i`: a run's values depend on `(seed, i)` only, never on parts, batches or
//! threads.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use std::sync::OnceLock;

use crate::attack::{Attack, MAX_ATTACKS};
use crate::engine::{Batch, CurveCache, HourlyInputs, RunSpec};
use crate::error::{Error, Result};
use crate::grid::load_table::{LoadTable, servable_scales};
use crate::ledger::encoding::Writer;
use crate::ledger::tx::write_rci;
use crate::market::Market;
use crate::rci::RciSettings;
use crate::sweep::spec::{Axis, Dimension, RunAttack, SweepSpec, Target, Value, apply};

/// The values one run is evaluated with (swept or taken from the base scenario).
#[derive(Debug, Clone, PartialEq)]
pub struct RunValues {
    /// External bus number of the PCC.
    pub pcc_bus: usize,
    /// Factor on the base system load.
    pub load_scale: f64,
    /// Factor on the microgrid renewables' available power.
    pub renewable_scale: f64,
    /// Factor on the microgrid's load.
    pub mg_load_scale: f64,
    /// The run's RCI settings.
    pub rci: RciSettings,
    /// The run's attack (an attack sweep), with the key of its seeded draws.
    pub attack: Option<(RunAttack, u64)>,
}

impl RunValues {
    /// The same run without its attack: its attack-free twin.
    pub fn attack_free(&self) -> RunValues {
        RunValues {
            attack: None,
            ..self.clone()
        }
    }

    /// The identity of the run's attack-free twin: every value but the attack, each
    /// number by its bits (so `-0.0` and `0.0` differ, as two runs with them may), the
    /// settings in the ledger's canonical encoding. Runs with one key have one twin. The
    /// destructurings (here and in the encoding) name every field, so a field added to
    /// [`RunValues`] or [`RciSettings`] cannot be left out of the key.
    pub fn twin_key(&self) -> TwinKey {
        let RunValues {
            pcc_bus,
            load_scale,
            renewable_scale,
            mg_load_scale,
            rci,
            attack: _,
        } = self;
        let mut w = Writer::default();
        w.u64(*pcc_bus as u64)
            .f64(*load_scale)
            .f64(*renewable_scale)
            .f64(*mg_load_scale);
        write_rci(&mut w, rci);
        TwinKey(w.bytes)
    }
}

/// [`RunValues::twin_key`]: a run's values without its attack, as bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TwinKey(Vec<u8>);

/// One run of the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRun {
    /// Global run index, `grid_point * samples + sample`.
    pub run: u64,
    /// Index of the grid point in the cartesian product.
    pub grid_point: u64,
    /// Index of the uniform draw at this grid point, `0..samples`.
    pub sample: u64,
    /// The run's values.
    pub values: RunValues,
}

impl PlannedRun {
    /// The engine's description of the run (no trajectory; its attack in slot 0).
    pub fn run_spec(&self) -> RunSpec {
        self.values.run_spec()
    }
}

impl RunValues {
    /// The engine's description of a run with these values (no trajectory; the attack,
    /// if any, in slot 0).
    pub fn run_spec(&self) -> RunSpec {
        let mut spec = RunSpec {
            load_scale: self.load_scale,
            renewable_scale: self.renewable_scale,
            mg_load_scale: self.mg_load_scale,
            rci: self.rci.clone(),
            ..RunSpec::default()
        };
        if let Some((a, key)) = &self.attack {
            let mut slots = [crate::attack::AttackSlot::default(); MAX_ATTACKS];
            slots[0] = a.slot(*key);
            spec.attacks = slots;
            spec.defence = a.defence;
        }
        spec
    }
}

/// One Parquet part: a contiguous range of runs of one pcc bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// The partition's pcc bus.
    pub pcc_bus: usize,
    /// Part number within the partition (`part-{index:05}.parquet`).
    pub index: usize,
    /// First global run index of the part.
    pub first_run: u64,
    /// Runs in the part.
    pub runs: usize,
    /// Whether the part has a `run_hours` file beside its `runs` file.
    pub run_hours: bool,
}

impl PartPlan {
    /// The part's files, relative to the sweep's output directory: its `runs` file, then
    /// its `run_hours` file when the sweep writes one.
    pub fn files(&self) -> Vec<String> {
        let mut files = vec![self.runs_path()];
        if self.run_hours {
            files.push(self.run_hours_path());
        }
        files
    }

    /// The part's `runs` file, relative to the sweep's output directory.
    pub fn runs_path(&self) -> String {
        format!(
            "runs/pcc_bus={}/part-{:05}.parquet",
            self.pcc_bus, self.index
        )
    }

    /// The part's `run_hours` file, relative to the sweep's output directory.
    pub fn run_hours_path(&self) -> String {
        format!(
            "run_hours/pcc_bus={}/part-{:05}.parquet",
            self.pcc_bus, self.index
        )
    }
}

/// A validated sweep with one market per pcc bus: the run list, computed on demand.
#[derive(Debug, Clone)]
pub struct SweepPlan {
    seed: u64,
    samples: u64,
    total: u64,
    dims: Vec<Dimension>,
    base: RunValues,
    /// (pcc bus, first run, runs, market), in run order.
    groups: Vec<(usize, u64, u64, Market)>,
    runs_per_part: u64,
    /// Every run carries an attack.
    attacks: bool,
    /// The sweep writes the `run_hours` table.
    run_hours: bool,
    /// A drawn load scale answered from a load table: its scale range and tolerance, MW.
    load_table: Option<((f64, f64), f64)>,
    /// Each group's load table, built on first use.
    tables: Vec<OnceLock<LoadTable>>,
}

/// Most levels per hour a sweep's load table may use (the build fails with the figures it
/// reached beyond).
pub const MAX_TABLE_LEVELS: usize = 4000;

/// A uniform `f64` in `[0, 1)` from the top 53 bits of one `u64` (written out rather than
/// taken from `rand`'s distributions so that the values cannot change with its version).
fn unit_f64(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform integer in `lo..=hi` by a widening multiply (bias < span / 2^64).
fn uniform_u32(rng: &mut ChaCha8Rng, lo: u32, hi: u32) -> u32 {
    let span = u128::from(hi - lo) + 1;
    lo + ((u128::from(rng.next_u64()) * span) >> 64) as u32
}

impl SweepSpec {
    /// Validates the sweep against the grid case (pcc buses, load limits), builds one
    /// market per pcc bus and returns the plan.
    pub fn plan(&self) -> Result<SweepPlan> {
        self.validate()?;
        let dims = self.dimensions()?;
        let total = self.total_runs()?;
        let base = RunValues {
            pcc_bus: self.base.microgrid.pcc_bus,
            load_scale: 1.0,
            renewable_scale: 1.0,
            mg_load_scale: 1.0,
            rci: self.base.rci.clone(),
            attack: None,
        };
        let buses: Vec<usize> = match dims.iter().find(|d| d.target == Target::PccBus) {
            Some(Dimension {
                axis: Axis::Grid(v),
                ..
            }) => v
                .iter()
                .filter_map(|x| match x {
                    Value::Bus(b) => Some(*b),
                    _ => None,
                })
                .collect(),
            _ => vec![base.pcc_bus],
        };
        let per_bus = total / buses.len() as u64;
        let mut groups = Vec::with_capacity(buses.len());
        for (k, &bus) in buses.iter().enumerate() {
            let mut scenario = self.base.clone();
            scenario.microgrid.pcc_bus = bus;
            let swept = self.parameters.pcc_bus.is_some();
            let market = Market::from_scenario(&scenario).map_err(|e| match e {
                Error::InvalidInput { ref field, .. } if swept && field == "microgrid.pcc_bus" => {
                    e.with_field(&format!("parameters.pcc_bus.values[{k}]"))
                }
                other => other.with_field_prefix("base."),
            })?;
            check_load_scale(&dims, &market, bus)?;
            groups.push((bus, k as u64 * per_bus, per_bus, market));
        }
        Ok(SweepPlan {
            attacks: self.parameters.attack.any(),
            seed: self.seed,
            samples: self.samples,
            total,
            dims,
            base,
            groups,
            runs_per_part: self.runs_per_part,
            run_hours: self.run_hours,
            load_table: self.load_table(),
            tables: (0..buses.len()).map(|_| OnceLock::new()).collect(),
        })
    }
}

/// The smart grid's curve exists only while the scaled load stays within its committed
/// units' range (plus the tie); the same check as [`Market::from_scenario`], per scale.
fn check_load_scale(dims: &[Dimension], market: &Market, bus: usize) -> Result<()> {
    let Some(d) = dims.iter().find(|d| d.target == Target::LoadScale) else {
        return Ok(());
    };
    let relief = if market.microgrid.config.enabled {
        market.microgrid.tie_capacity_mw
    } else {
        0.0
    };
    let (cap, min_out) = (market.grid.capacity_mw(), market.grid.min_output_mw());
    let (mut lo, mut hi) = (0.0_f64, f64::INFINITY);
    for &l in &market.system_load_mw {
        if l > 0.0 {
            hi = hi.min((cap + relief) / l);
            lo = lo.max((min_out - relief) / l);
        }
    }
    let allowed = format!(
        "[{lo:.4}, {hi:.4}] at pcc_bus {bus}: the scaled system load must stay within the \
         committed units' minimum output {min_out:.1} MW and capacity {cap:.1} MW (+/- tie \
         {relief:.1} MW)"
    );
    let candidates: Vec<(String, f64)> = match &d.axis {
        Axis::Grid(v) => v
            .iter()
            .enumerate()
            .filter_map(|(k, x)| match x {
                Value::F64(s) => Some((format!("{}.values[{k}]", d.field), *s)),
                _ => None,
            })
            .collect(),
        Axis::Uniform(a, b) => vec![
            (format!("{}.uniform[0]", d.field), *a),
            (format!("{}.uniform[1]", d.field), *b),
        ],
        Axis::UniformInt(..) => Vec::new(),
    };
    for (field, s) in candidates {
        if !(s >= lo && s <= hi) {
            return Err(Error::invalid(field, s, allowed));
        }
    }
    Ok(())
}

impl SweepPlan {
    /// Total runs.
    pub fn total_runs(&self) -> u64 {
        self.total
    }

    /// Whether this is an attack sweep (every run carries one attack).
    pub fn has_attacks(&self) -> bool {
        self.attacks
    }

    /// Whether the sweep writes the `run_hours` table.
    pub fn has_run_hours(&self) -> bool {
        self.run_hours
    }

    /// Uniform draws per grid point.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The pcc buses, in run order (one hive partition each).
    pub fn pcc_buses(&self) -> Vec<usize> {
        self.groups.iter().map(|g| g.0).collect()
    }

    /// The market of a pcc bus.
    pub fn market(&self, pcc_bus: usize) -> Option<&Market> {
        self.groups.iter().find(|g| g.0 == pcc_bus).map(|g| &g.3)
    }

    /// The load table the sweep's drawn load scale reads, `(scale range, tol_mw)`; `None`
    /// when every run builds its own exact curves.
    pub fn load_table_spec(&self) -> Option<((f64, f64), f64)> {
        self.load_table
    }

    /// The load table of a pcc bus's market, built on the first call (on RTS-24, 2 cores:
    /// 1.2 s over load scales 0.95..1.05, 2.1 s over 0.9..1.1), and whether this call
    /// built it; `None` when the sweep reads no table.
    pub fn table(&self, pcc_bus: usize) -> Result<Option<(&LoadTable, bool)>> {
        let Some((range, tol)) = self.load_table else {
            return Ok(None);
        };
        let k = self.group_index(pcc_bus)?;
        if let Some(t) = self.tables[k].get() {
            return Ok(Some((t, false)));
        }
        // The build's errors name its arguments; the user's are the draw's range and the
        // tolerance (a tolerance that needs too many levels is the tolerance's fault).
        let market = &self.groups[k].3;
        let table =
            LoadTable::build(market, range, tol, MAX_TABLE_LEVELS).map_err(|e| match e {
                Error::InvalidInput {
                    field,
                    value,
                    allowed,
                } => Error::InvalidInput {
                    field: match field.as_str() {
                        "scale_range" => "parameters.load_scale.uniform".to_string(),
                        _ => "parameters.load_scale.table_tol_mw".to_string(),
                    },
                    value: if field == "max_levels" {
                        crate::error::number(tol)
                    } else {
                        value
                    },
                    // A range the market cannot serve: where it can (LPs, so searched only
                    // for that error).
                    allowed: match (field == "scale_range").then(|| servable_scales(market, range))
                    {
                        Some(Ok(Some((a, b)))) if a > range.0 || b < range.1 => format!(
                            "{allowed}; this market is served at load scales {a:.4}..={b:.4} \
                             (to 1e-4): draw within them"
                        ),
                        _ => allowed,
                    },
                },
                other => other,
            })?;
        Ok(Some((self.tables[k].get_or_init(|| table), true)))
    }

    /// The engine's batch of `runs` of a pcc bus: the smart grid's curves from `cache`'s
    /// curve sets (built per distinct load scale), or, when the sweep reads a load table,
    /// each run's hours at `load_scale` times the base load, blended from the table
    /// ([`Batch::from_market_with_table`]; the microgrid's hours are the forecast's, so
    /// only the smart grid's curves differ from the exact ones, by at most `tol_mw`).
    pub fn batch(&self, pcc_bus: usize, runs: &[RunSpec], cache: &mut CurveCache) -> Result<Batch> {
        let market = &self.groups[self.group_index(pcc_bus)?].3;
        let Some((table, _)) = self.table(pcc_bus)? else {
            return Batch::from_market_cached(market, runs, cache);
        };
        let forecast = HourlyInputs::forecast(market);
        let specs: Vec<RunSpec> = runs
            .iter()
            .map(|r| {
                let scale = r.load_scale;
                RunSpec {
                    load_scale: 1.0,
                    hourly: Some(Box::new(HourlyInputs {
                        sg_load_mw: Some(market.system_load_mw.map(|l| l * scale)),
                        ..forecast.clone()
                    })),
                    ..r.clone()
                }
            })
            .collect();
        let batch = Batch::from_market_with_table(market, &specs, cache, table)?;
        // Drawn scales lie in the table's range, so no hour may fall outside it.
        for (i, r) in runs.iter().enumerate() {
            if let Some(h) = (0..batch.hours()).find(|&h| batch.sg_load_out_of_range(i, h)) {
                return Err(Error::invalid(
                    "parameters.load_scale",
                    crate::error::number(r.load_scale),
                    format!(
                        "within the load table's range {:?} (hour {h} fell outside it)",
                        table.scale_range()
                    ),
                ));
            }
        }
        Ok(batch)
    }

    fn group_index(&self, pcc_bus: usize) -> Result<usize> {
        self.groups
            .iter()
            .position(|g| g.0 == pcc_bus)
            .ok_or_else(|| Error::Output {
                context: "sweep plan".into(),
                message: format!("no market for pcc_bus {pcc_bus}"),
            })
    }

    /// Smart-grid curve sets the sweep builds: one per (pcc bus, distinct load scale),
    /// since only the system load changes the network-exact curves. A drawn load scale
    /// gives every run its own, unless it reads a load table (0: the table's levels,
    /// counted when it is built, are the curves).
    pub fn curve_sets(&self) -> u64 {
        if self.load_table.is_some() {
            return 0;
        }
        let load = self
            .dims
            .iter()
            .find(|d| d.target == Target::LoadScale)
            .map(|d| &d.axis);
        self.groups
            .iter()
            .map(|&(_, _, runs, _)| match load {
                None => 1,
                Some(Axis::Grid(v)) => (v.len() as u64).min(runs),
                Some(_) => runs,
            })
            .sum()
    }

    /// Every part, partition by partition in run order.
    pub fn parts(&self) -> Vec<PartPlan> {
        let mut parts = Vec::new();
        for &(pcc_bus, first, runs, _) in &self.groups {
            let mut start = 0;
            let mut index = 0;
            while start < runs {
                let n = self.runs_per_part.min(runs - start);
                parts.push(PartPlan {
                    pcc_bus,
                    index,
                    first_run: first + start,
                    runs: n as usize,
                    run_hours: self.run_hours,
                });
                start += n;
                index += 1;
            }
        }
        parts
    }

    /// Run `i` (panics when `i >= total_runs()`, a caller bug, not user input).
    pub fn run(&self, i: u64) -> PlannedRun {
        assert!(i < self.total, "run {i} out of 0..{}", self.total);
        let grid_point = i / self.samples;
        let sample = i % self.samples;
        let mut values = self.base.clone();
        let mut scales = [
            values.load_scale,
            values.renewable_scale,
            values.mg_load_scale,
        ];
        // Mixed-radix decode, last grid dimension fastest.
        let mut rest = grid_point;
        let mut picks = vec![0usize; self.dims.len()];
        for (k, d) in self.dims.iter().enumerate().rev() {
            let n = d.axis.grid_len() as u64;
            picks[k] = (rest % n) as usize;
            rest /= n;
        }
        let mut rng = None::<ChaCha8Rng>;
        let mut attack = RunAttack::default();
        for (d, &pick) in self.dims.iter().zip(&picks) {
            let value = match &d.axis {
                Axis::Grid(v) => v[pick],
                Axis::Uniform(lo, hi) => {
                    let rng = rng.get_or_insert_with(|| stream(self.seed, i));
                    // `min` guards the rounding of lo + (hi - lo) * u up to hi only.
                    Value::F64((lo + (hi - lo) * unit_f64(rng)).min(*hi))
                }
                Axis::UniformInt(lo, hi) => {
                    let rng = rng.get_or_insert_with(|| stream(self.seed, i));
                    Value::U32(uniform_u32(rng, *lo, *hi))
                }
            };
            apply(
                d.target,
                value,
                &mut values.rci,
                &mut scales,
                &mut values.pcc_bus,
                &mut attack,
            );
        }
        if self.attacks {
            values.attack = Some((attack, attack_key(self.seed, i)));
        }
        [
            values.load_scale,
            values.renewable_scale,
            values.mg_load_scale,
        ] = scales;
        PlannedRun {
            run: i,
            grid_point,
            sample,
            values,
        }
    }
}

/// Domain of the attack keys, ASCII "attack".
const ATTACK_DOMAIN: u64 = 0x6174_7461_636b;

/// The seed of run `i`'s attack draws (`uniform` and `sign` shapes): the first `u64` of
/// stream `i` under the sweep seed XOR "attack", apart from the parameter draws.
fn attack_key(seed: u64, i: u64) -> u64 {
    stream(seed ^ ATTACK_DOMAIN, i).next_u64()
}

impl RunAttack {
    /// The engine slot of this attack with the run's key.
    pub fn slot(&self, key: u64) -> crate::attack::AttackSlot {
        Attack {
            variable: self.variable,
            agent: self.agent,
            hours: vec![self.hour],
            first_iteration: self.first_iteration,
            duration: (self.duration > 0).then_some(self.duration),
            shape: self.shape,
            size: self.size,
            ramp_iterations: 10,
            seed: 0,
        }
        .slot(0, key)
    }
}

/// Run `i`'s random stream: the sweep seed's ChaCha8 key, stream (nonce) `i`.
fn stream(seed: u64, i: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(i);
    rng
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn spec(text: &str) -> SweepSpec {
        SweepSpec::from_toml(text, Path::new("t.toml")).unwrap()
    }

    /// Every value but the attack is in a run's twin key, by its bits: changing any one
    /// of them (a sign of zero included) changes the key, and the attack does not.
    #[test]
    fn a_twin_key_holds_every_value_but_the_attack() {
        use crate::rci::{DualUpdate, PowerUpdate, StartPrice, StepRule};
        let base = RunValues {
            pcc_bus: 7,
            load_scale: 1.0,
            renewable_scale: 0.0,
            mg_load_scale: 1.0,
            rci: RciSettings::default(),
            attack: None,
        };
        let key = base.twin_key();
        let attacked = RunValues {
            attack: Some((RunAttack::default(), 99)),
            ..base.clone()
        };
        assert_eq!(attacked.twin_key(), key);
        type Change = fn(&mut RunValues);
        let changes: [Change; 22] = [
            |v| v.pcc_bus = 8,
            |v| v.load_scale = 1.05,
            |v| v.renewable_scale = -0.0,
            |v| v.mg_load_scale = 0.9,
            |v| v.rci.chi = 0.25,
            |v| v.rci.step_rule = StepRule::Constant,
            |v| v.rci.step_rule = StepRule::Diminishing,
            |v| v.rci.kappa = 0.003,
            |v| v.rci.kappa_decay = 100.0,
            |v| v.rci.newton_damping = 0.5,
            |v| v.rci.slope_floor = 2.0,
            |v| v.rci.dual_update = DualUpdate::Gradient,
            |v| v.rci.xi = 0.1,
            |v| v.rci.power_update = PowerUpdate::Relaxed,
            |v| v.rci.relax_gamma = 2.0,
            |v| v.rci.price_tol = 1e-6,
            |v| v.rci.power_tol = 1e-5,
            |v| v.rci.dual_tol = 1e-6,
            |v| v.rci.balance_tol = 1e-5,
            |v| v.rci.max_iterations = 999,
            |v| v.rci.initial_price = 21.0,
            |v| v.rci.start_price = StartPrice::Common,
        ];
        let mut keys = vec![key];
        for change in changes {
            let mut v = base.clone();
            change(&mut v);
            // Two twins by the former key, the values' `Debug` text, too.
            assert_ne!(format!("{v:?}"), format!("{base:?}"));
            keys.push(v.twin_key());
        }
        let n = keys.len();
        keys.sort_by_key(|k| format!("{k:?}"));
        keys.dedup();
        assert_eq!(keys.len(), n, "two different runs share a twin key");
    }

    #[test]
    fn grid_order_is_row_major_with_samples_innermost() {
        let s = spec(
            "seed = 3\nsamples = 2\n[parameters]\nrenewable_scale = { uniform = [0.5, 1.5] }\n\
             rci.kappa = { values = [1.0, 2.0, 3.0] }\n\
             rci.step_rule = { values = [\"constant\", \"newton\"] }",
        );
        let plan = s.plan().unwrap();
        assert_eq!(plan.total_runs(), 12);
        let r = plan.run(7); // grid point 3 = kappa index 1, step rule index 1; sample 1
        assert_eq!((r.grid_point, r.sample), (3, 1));
        assert_eq!(r.values.rci.kappa, 2.0);
        assert_eq!(r.values.rci.step_rule, crate::rci::StepRule::Newton);
        assert!((0.5..1.5).contains(&r.values.renewable_scale));
        assert_eq!(r.values.load_scale, 1.0);
        // Draws depend on (seed, run) only.
        assert_eq!(plan.run(7), s.plan().unwrap().run(7));
        assert_ne!(plan.run(6).values.renewable_scale, r.values.renewable_scale);
    }

    #[test]
    fn draws_are_value_stable() {
        // Golden values: a change here changes every published sweep's runs.
        let mut rng = stream(42, 5);
        let u = unit_f64(&mut rng);
        let mut rng = stream(42, 5);
        assert_eq!(uniform_u32(&mut rng, 10, 20), 10 + (u * 11.0) as u32);
        assert_eq!(u, GOLDEN_U_42_5);
    }

    /// First unit draw of stream 5 under seed 42 (ChaCha8, rand_chacha 0.10).
    const GOLDEN_U_42_5: f64 = 0.3527329318569201;

    #[test]
    fn parts_cover_each_bus_contiguously() {
        let s = spec(
            "seed = 1\nruns_per_part = 4\nsamples = 5\n[parameters]\n\
             pcc_bus = { values = [7, 8] }\nload_scale = { uniform = [0.95, 1.0] }",
        );
        let plan = s.plan().unwrap();
        let parts = plan.parts();
        let summary: Vec<(usize, usize, u64, usize)> = parts
            .iter()
            .map(|p| (p.pcc_bus, p.index, p.first_run, p.runs))
            .collect();
        assert_eq!(
            summary,
            vec![(7, 0, 0, 4), (7, 1, 4, 1), (8, 0, 5, 4), (8, 1, 9, 1)]
        );
        assert_eq!(plan.run(6).values.pcc_bus, 8);
        assert_eq!(parts[2].runs_path(), "runs/pcc_bus=8/part-00000.parquet");
    }

    #[test]
    fn case_dependent_errors_name_the_field() {
        let e = spec("seed = 1\n[parameters]\npcc_bus = { values = [7, 99] }")
            .plan()
            .unwrap_err();
        assert!(
            e.to_string().contains("parameters.pcc_bus.values[1]"),
            "{e}"
        );
        let e = spec("seed = 1\n[parameters]\nload_scale = { uniform = [0.9, 3.0] }")
            .plan()
            .unwrap_err();
        assert!(
            e.to_string().contains("parameters.load_scale.uniform[1]"),
            "{e}"
        );
    }
}
