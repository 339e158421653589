//! The wgpu backend: `shaders/rci.wgsl`, one invocation per (run, hour), in f32 or f64.
//!
//! The host packs a [`Batch`] into `#[repr(C)]` Pod structs mirrored in WGSL (one set per
//! precision: [`RunParams32`]/[`RunParams64`] and friends, each with a layout test against
//! naga's layouter), splits the runs into chunks that respect the device's buffer, binding
//! and dispatch limits, and keeps two chunks in flight: chunk `i + 1` is submitted before
//! chunk `i`'s readback is mapped, so upload, compute and readback overlap.
//!
//! The kernel mirrors the attacked step of [`crate::rci::step`] ([`crate::attack`]): each
//! run carries [`MAX_ATTACKS`] slots and its defence, an hour with an undefended active
//! slot negotiates on the agents' own views, and every record counts the tampered and
//! rejected messages as the CPU reference does. Every code the host and the kernel share
//! is generated into the kernel's source from its Rust definition ([`shader_source`]), and
//! every test of a code in the kernel ends in a failing default: a code the kernel does
//! not know comes back as a [`KernelFault`] and an error, never runs as another code.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use rayon::prelude::*;
use wgpu::util::DeviceExt;

use crate::attack::{AttackShape, AttackVariable, Defence, MAX_ATTACKS};
use crate::engine::batch::{
    AdapterInfo, AgentSlot, AttackSlot, Batch, BatchOutputs, ChunkOutputs, Collector, HourInput,
    HourRecord, MAX_AGENTS, MAX_UNITS, NO_HOURLY, RunSummary, RunTrajectory, SCALE_LOAD,
    SCALE_RENEWABLES, UNIT_STRIDE,
};
use crate::error::{Error, Result};
use crate::microgrid::HOURS;
use crate::rci::{
    AgentState, DIVERGENCE_LIMIT, DualUpdate, PowerUpdate, Residuals, StartPrice, StepRule,
    TrajectoryPoint,
};

/// The kernel, without its precision prelude (see [`shader_source`]).
pub const KERNEL_WGSL: &str = include_str!("../../shaders/rci.wgsl");
/// Invocations per workgroup unless [`GpuContext::with_workgroup_size`] says otherwise (the
/// kernel's pipeline-overridable `WORKGROUP_SIZE`).
pub const WORKGROUP_SIZE: u32 = 64;
/// The workgroup sizes a context accepts: powers of two from one NVIDIA warp to 256.
pub const WORKGROUP_SIZES: [u32; 4] = [32, 64, 128, 256];
/// Runs per chunk unless the limits ask for fewer: small enough that two chunks in flight
/// overlap, large enough to fill a GPU (16384 runs x 24 hours = 393k invocations).
pub const DEFAULT_RUNS_PER_CHUNK: usize = 16_384;
/// Marks a run without trajectory in [`RunParams32::trajectory_offset`].
pub const NO_TRAJECTORY: u32 = u32::MAX;
/// Longest wait for a readback's map callback once its submission has completed.
pub const MAP_TIMEOUT: Duration = Duration::from_secs(60);

/// Arithmetic precision of the GPU kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// 32-bit floats: every adapter.
    F32,
    /// 64-bit floats: adapters with `SHADER_F64` (Vulkan `shaderFloat64`).
    F64,
}

impl Precision {
    /// Its name, as the CLI and the manifests write it (and WGSL's type): `f32`, `f64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::F64 => "f64",
        }
    }
}

/// The WGSL source of the kernel for a precision: an `alias real`, the size constants and
/// the shared codes (`codes`) prepended to `shaders/rci.wgsl`. WGSL has no preprocessor and naga needs no `enable`
/// for f64 (it is gated by `Capabilities::FLOAT64` / `Features::SHADER_F64`).
pub fn shader_source(precision: Precision) -> String {
    let real = precision.as_str();
    format!(
        "alias real = {real};\nconst DIVERGENCE_LIMIT: real = {DIVERGENCE_LIMIT:e};\nconst MAX_AGENTS: u32 = {MAX_AGENTS}u;\nconst MAX_UNITS: u32 = \
         {MAX_UNITS}u;\nconst MAX_POINTS: u32 = {}u;\nconst MAX_ATTACKS: u32 = {MAX_ATTACKS}u;\nconst DAY_HOURS: u32 = \
         {HOURS}u;\noverride WORKGROUP_SIZE: u32 = {WORKGROUP_SIZE}u;\n{}{KERNEL_WGSL}",
        2 * MAX_UNITS,
        codes()
    )
}

/// The settlement passes, without their constants (see [`settle_source`]).
pub const SETTLE_WGSL: &str = include_str!("../../shaders/settle.wgsl");

/// The WGSL source of the f64 kernel's settlement passes
/// ([`GpuContext::run_summaries_with_heads`]): the record layout, the settlement encoding's
/// first bytes and the agent indices, from their Rust definitions, prepended to
/// `shaders/settle.wgsl`.
pub fn settle_source() -> String {
    use crate::ledger::chain::{MICROGRID, SMART_GRID};
    use crate::ledger::encoding::{TAG_SETTLEMENT, VERSION};
    use std::mem::offset_of;
    let word = |bytes: usize| bytes / 4;
    let mut out = String::new();
    for (name, value) in [
        ("RECORD_WORDS", word(size_of::<HourOut64>())),
        ("PRICE_WORD", word(offset_of!(HourOut64, price))),
        ("EXCHANGE_WORD", word(offset_of!(HourOut64, exchange))),
        ("RECORD32_WORDS", word(size_of::<HourOut32>())),
        ("R32_PRICE", word(offset_of!(HourOut32, price))),
        ("R32_EXCHANGE", word(offset_of!(HourOut32, exchange))),
        ("R32_COST", word(offset_of!(HourOut32, cost))),
        ("R32_BALANCE", word(offset_of!(HourOut32, balance))),
        ("R32_ITERATIONS", word(offset_of!(HourOut32, iterations))),
        ("R32_CONVERGED", word(offset_of!(HourOut32, converged))),
        ("R32_TAMPERED", word(offset_of!(HourOut32, tampered))),
        ("R32_REJECTED", word(offset_of!(HourOut32, rejected))),
        ("R32_FAULT", word(offset_of!(HourOut32, fault))),
        ("R32_FAULT_CODE", word(offset_of!(HourOut32, fault_code))),
        ("SUBNORMAL_FAULT", SUBNORMAL_FAULT as usize),
        ("MAX_AGENTS", MAX_AGENTS),
        ("SETTLEMENT_VERSION", usize::from(VERSION)),
        ("SETTLEMENT_TAG", usize::from(TAG_SETTLEMENT)),
        ("AGENT_MICROGRID", MICROGRID as usize),
        ("AGENT_SMART_GRID", SMART_GRID as usize),
    ] {
        out.push_str(&format!("const {name}: u32 = {value}u;\n"));
    }
    format!("{out}override WORKGROUP_SIZE: u32 = {WORKGROUP_SIZE}u;\n{SETTLE_WGSL}")
}

/// The `fault` of a run summed in f64 from f32 records (`reduce_wide`) with a subnormal
/// term, which the device may have flushed to zero when widening it: not a kernel fault
/// code (those are small).
const SUBNORMAL_FAULT: u32 = 0xffff_0001;

/// Whether a chunk of layout `L` read back as `readback` has its summaries summed in f64
/// by the settlement module (`reduce_wide`): f32 records with settlement heads, whose
/// `runs` rows must equal those the host sums from the records in f64.
fn wide_summaries<L: Layout>(readback: &Readback) -> bool {
    matches!(readback, Readback::Heads(_)) && L::PRECISION == Precision::F32
}

/// Refuses a batch that keeps a trajectory (a per-hour output) where only per-run outputs
/// are read back.
fn no_trajectories(batch: &Batch) -> Result<()> {
    match batch.trajectory.iter().position(|&t| t) {
        Some(run) => Err(Error::invalid(
            format!("runs[{run}].trajectory"),
            true,
            "false when only run summaries are read back",
        )),
        None => Ok(()),
    }
}

/// Uniform parameters of a settlement pass (mirror of WGSL `SettleParams`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
struct SettleParams {
    /// (run, hour) pairs in the chunk.
    items: u32,
    /// Hours per run.
    hours: u32,
    /// Workgroups along x of the pass's 2-D dispatch.
    groups_x: u32,
    /// [`LOOP_PROBE`].
    loop_probe: u32,
}

/// u32 words per run in the heads pass's output: the head's 8 words, then a flag.
const HEAD_WORDS: usize = 9;

fn gpu_error(message: impl Into<String>) -> Error {
    Error::Solver {
        problem: "GPU engine".into(),
        message: message.into(),
    }
}

/// Uniform parameters of one chunk (mirror of WGSL `Params`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct ChunkParams {
    /// (run, hour) pairs in the chunk.
    pub items: u32,
    /// Hours per run.
    pub hours: u32,
    /// Agents per hour.
    pub agents: u32,
    /// Workgroups along x of the 2-D dispatch.
    pub groups_x: u32,
    /// [`LOOP_PROBE`]: the trip count of the kernel's `loops_cut` probe.
    pub loop_probe: u32,
}

/// The trip count of the kernel's `loops_cut` probe: a loop the compiler cannot unroll,
/// which runs fewer times once the driver has started cutting loops short
/// ([`KernelFault::LoopLimit`]).
pub const LOOP_PROBE: u32 = 2;

/// Host mirrors of the kernel's structs for one precision, and their conversions.
pub trait Layout {
    /// The kernel's `real`.
    type Real: Pod + Copy + Into<f64>;
    /// Mirror of `RunParams`.
    type Run: Pod;
    /// Mirror of `AttackSlot`.
    type Attack: Pod;
    /// Mirror of `AgentSlot`.
    type Slot: Pod;
    /// Mirror of `HourIn`.
    type Hour: Pod;
    /// Mirror of `HourOut` (`Sync`: chunks are unpacked in parallel).
    type Out: Pod + Sync;
    /// The kernel's precision.
    const PRECISION: Precision;
    /// Rounds a host value to the kernel's `real`.
    fn real(x: f64) -> Self::Real;
    /// Packs the settings of run `run` of `batch`, with the offsets of its trajectory (in
    /// reals) and of its per-hour inputs in the chunk's buffers.
    fn run(batch: &Batch, run: usize, trajectory_offset: u32, hourly_offset: u32) -> Self::Run;
    /// Packs one per-hour input.
    fn hour(h: &HourInput) -> Self::Hour;
    /// Packs an attack slot.
    fn attack(a: &AttackSlot) -> Self::Attack;
    /// Packs an agent slot.
    fn slot(s: &AgentSlot) -> Self::Slot;
    /// Unpacks one (run, hour) outcome.
    fn record(o: &Self::Out) -> HourRecord;
    /// The kernel's fault in one (run, hour) and the code it met: `(0, 0)` for none.
    fn fault(o: &Self::Out) -> (u32, u32);
    /// Mirror of `RunOut`.
    type RunOut: Pod + Sync;
    /// Unpacks one run's summary.
    fn summary(o: &Self::RunOut) -> RunSummary;
    /// The first faulting hour of a run's summary: `(fault, code, hour)`, fault 0 for none.
    fn run_fault(o: &Self::RunOut) -> (u32, u32, u32);
}

/// Why the kernel stopped an invocation (`HourOut.fault`), reported as an error: a test of
/// a code that met none of the codes it knows (the host and the kernel disagree about a
/// code, a bug), or loops the driver cut short ([`KernelFault::LoopLimit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum KernelFault {
    /// `RunParams.step_rule`.
    StepRule = 1,
    /// `RunParams.power_update`.
    PowerUpdate = 2,
    /// `RunParams.dual_update`.
    DualUpdate = 3,
    /// `RunParams.start_price`.
    StartPrice = 4,
    /// `RunParams.defence`.
    Defence = 5,
    /// `AttackSlot.variable`.
    AttackVariable = 6,
    /// `AttackSlot.shape`.
    AttackShape = 7,
    /// Not a code: the driver cut the invocation's loops short. Lavapipe ends every loop
    /// of an invocation group once their iterations reach 65535 in all
    /// (LP_MAX_TGSI_LOOP_ITERATIONS); the kernel's probe (`loops_cut`) sees it, and the
    /// hour is reported instead of returned truncated.
    LoopLimit = 8,
    /// Not a code: an hour needs what its [`KernelVariant`] was compiled without (its
    /// code: 1, attacks; 2, the load-table blend), a host bug.
    KernelVariant = 9,
}

impl KernelFault {
    /// Every fault, in code order.
    pub const ALL: [KernelFault; 9] = [
        KernelFault::StepRule,
        KernelFault::PowerUpdate,
        KernelFault::DualUpdate,
        KernelFault::StartPrice,
        KernelFault::Defence,
        KernelFault::AttackVariable,
        KernelFault::AttackShape,
        KernelFault::LoopLimit,
        KernelFault::KernelVariant,
    ];

    /// The fault of a kernel's `fault` field (`None` for 0, no fault, or an unknown one).
    pub fn from_code(code: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|f| *f as u32 == code)
    }

    /// The code the fault is about, in words.
    pub fn what(self) -> &'static str {
        match self {
            KernelFault::StepRule => "step rule",
            KernelFault::PowerUpdate => "power update",
            KernelFault::DualUpdate => "dual update",
            KernelFault::StartPrice => "start price",
            KernelFault::Defence => "defence",
            KernelFault::AttackVariable => "attack variable",
            KernelFault::AttackShape => "attack shape",
            KernelFault::LoopLimit => "loop limit",
            KernelFault::KernelVariant => "kernel variant",
        }
    }
}

/// The error of a kernel that stopped hour `hour` of run `run` (`fault`, a [`KernelFault`]
/// code): an unknown code `code`, or loops cut short after `code` probe iterations.
fn fault_error(run: usize, hour: usize, fault: u32, code: u32) -> Error {
    if fault == KernelFault::LoopLimit as u32 {
        return gpu_error(format!(
            "run {run}, hour {hour}: the Vulkan driver cut the kernel's loops short (its \
             probe ran {code} of {LOOP_PROBE} iterations). Lavapipe ends the loops of a group \
             of 8 hours once they have run 65535 iterations in all, about 1100 RCI iterations \
             of a Newton hour (500 under an undefended attack); run this on the CPU backend \
             (--backend cpu) or a hardware GPU, or lower rci.max_iterations"
        ));
    }
    if fault == KernelFault::KernelVariant as u32 {
        let lacks = match code {
            1 => "attacks",
            2 => "the load-table blend",
            _ => "an unknown feature",
        };
        return gpu_error(format!(
            "run {run}, hour {hour}: the kernel variant that ran it was compiled without \
             {lacks} (code {code}), which the hour needs (a host bug: KernelVariant::of)"
        ));
    }
    let what = KernelFault::from_code(fault).map_or_else(
        || format!("an unknown fault {fault} about code"),
        |f| format!("an unknown {} code", f.what()),
    );
    gpu_error(format!(
        "run {run}, hour {hour}: the kernel met {what} {code} (the host and the kernel disagree about their codes)"
    ))
}

/// `name` in the kernel's constant style: `dual_upper` -> `DUAL_UPPER`.
fn constant_name(prefix: &str, name: &str) -> String {
    format!("{prefix}_{}", name.to_uppercase().replace(' ', "_"))
}

/// The kernel's codes, generated into its source by [`shader_source`]: every code the
/// host and the kernel share is defined here once.
fn codes() -> String {
    let mut out = String::new();
    for (name, code) in [
        ("STEP_CONSTANT", step_rule_code(StepRule::Constant)),
        ("STEP_DIMINISHING", step_rule_code(StepRule::Diminishing)),
        ("STEP_NEWTON", step_rule_code(StepRule::Newton)),
        ("UPDATE_PLAIN", power_update_code(PowerUpdate::Plain)),
        ("UPDATE_RELAXED", power_update_code(PowerUpdate::Relaxed)),
        ("DUAL_EXACT", dual_update_code(DualUpdate::Exact)),
        ("DUAL_GRADIENT", dual_update_code(DualUpdate::Gradient)),
        ("START_COMMON", start_price_code(StartPrice::Common)),
        (
            "START_OWN_MARGINAL",
            start_price_code(StartPrice::OwnMarginal),
        ),
        ("NO_TRAJECTORY", NO_TRAJECTORY),
        ("NO_HOURLY", NO_HOURLY),
        ("SCALE_RENEWABLES", SCALE_RENEWABLES),
        ("SCALE_LOAD", SCALE_LOAD),
        ("UNIT_STRIDE", UNIT_STRIDE as u32),
        // An empty attack slot (`AttackSlot::variable`).
        ("ATTACK_NONE", 0),
    ] {
        out.push_str(&format!("const {name}: u32 = {code}u;\n"));
    }
    let named = AttackVariable::ALL
        .map(|v| (constant_name("ATTACK", v.name()), v.code()))
        .into_iter()
        .chain(AttackShape::ALL.map(|s| (constant_name("SHAPE", &format!("{s:?}")), s.code())))
        .chain(
            [Defence::Undefended, Defence::Defended]
                .map(|d| (constant_name("DEFENCE", &format!("{d:?}")), d.code())),
        )
        .chain(KernelFault::ALL.map(|f| (constant_name("FAULT", f.what()), f as u32)));
    for (name, code) in named {
        out.push_str(&format!("const {name}: u32 = {code}u;\n"));
    }
    out
}

fn dual_update_code(d: DualUpdate) -> u32 {
    match d {
        DualUpdate::Exact => 0,
        DualUpdate::Gradient => 1,
    }
}

fn start_price_code(r: StartPrice) -> u32 {
    match r {
        StartPrice::Common => 0,
        StartPrice::OwnMarginal => 1,
    }
}

fn step_rule_code(r: StepRule) -> u32 {
    match r {
        StepRule::Constant => 0,
        StepRule::Diminishing => 1,
        StepRule::Newton => 2,
    }
}

fn power_update_code(p: PowerUpdate) -> u32 {
    match p {
        PowerUpdate::Plain => 0,
        PowerUpdate::Relaxed => 1,
    }
}

macro_rules! mirrors {
    ($layout:ident, $real:ty, $prec:expr, $run:ident, $attack:ident, $slot:ident, $hour:ident, $out:ident, $run_out:ident) => {
        /// Mirror of WGSL `RunParams`: one run's RCI settings (units as in
        /// [`crate::rci::RciSettings`]) and perturbation factors.
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
        pub struct $run {
            /// Consensus weight chi.
            pub chi: $real,
            /// Innovation step kappa, ($/MWh)/MW.
            pub kappa: $real,
            /// Halving iterations of the diminishing step.
            pub kappa_decay: $real,
            /// Damping of the Newton step.
            pub newton_damping: $real,
            /// Smallest summed slope, MW/($/MWh).
            pub slope_floor: $real,
            /// Dual step xi, ($/MWh)/MW.
            pub xi: $real,
            /// Relaxation gamma, MW.
            pub relax_gamma: $real,
            /// Price stop tolerance, $/MWh.
            pub price_tol: $real,
            /// Power stop tolerance, MW.
            pub power_tol: $real,
            /// Dual stop tolerance, $/MWh.
            pub dual_tol: $real,
            /// Balance stop tolerance, MW.
            pub balance_tol: $real,
            /// Starting price, $/MWh.
            pub initial_price: $real,
            /// Factor on the renewables' pmax.
            pub renewable_scale: $real,
            /// Factor on the microgrid load.
            pub mg_load_scale: $real,
            /// Iteration cap.
            pub max_iterations: u32,
            /// Step rule code (`STEP_*` of the kernel).
            pub step_rule: u32,
            /// Power update code (`UPDATE_*`).
            pub power_update: u32,
            /// Curve set (load scale) of the run.
            pub curve_set: u32,
            /// Offset of the run's trajectory in reals, or [`NO_TRAJECTORY`].
            pub trajectory_offset: u32,
            /// Dual update code (`DUAL_*`).
            pub dual_update: u32,
            /// Index of the run's first per-hour input in the chunk, or [`NO_HOURLY`].
            pub hourly_offset: u32,
            /// Start price code (`START_*`).
            pub start_price: u32,
            /// Defence code (`DEFENCE_*`).
            pub defence: u32,
            /// Padding to the struct's alignment.
            pub _pad: u32,
        }

        /// Mirror of WGSL `HourIn` (see [`HourInput`]).
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
        pub struct $hour {
            /// Base pmax of the renewable units, MW.
            pub unit_pmax: [$real; MAX_UNITS],
            /// Base load of the load agent, MW.
            pub load_mw: $real,
            /// Weight of the next level's pool curves.
            pub sg_weight: $real,
            /// Index of the hour's first agent slot.
            pub slot_base: u32,
            /// Padding to the struct's alignment.
            pub _pad: u32,
        }

        /// Mirror of WGSL `AttackSlot` (see [`AttackSlot`]).
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
        pub struct $attack {
            /// Attacked variable code (`ATTACK_*`; `ATTACK_NONE`: empty slot).
            pub variable: u32,
            /// Target agent.
            pub agent: u32,
            /// Attacked hours, bit `h` for hour `h`.
            pub hours: u32,
            /// First attacked message iteration.
            pub first: u32,
            /// Last attacked message iteration (inclusive).
            pub last: u32,
            /// Shape code (`SHAPE_*`).
            pub shape: u32,
            /// Iterations of a ramp.
            pub ramp_iterations: u32,
            /// Key of the seeded draws.
            pub key: u32,
            /// Size of `c`, in the variable's unit.
            pub size: $real,
        }

        /// Mirror of WGSL `AgentSlot` (see [`AgentSlot`]).
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
        pub struct $slot {
            /// Unscaled fixed export, MW.
            pub fixed_export_mw: $real,
            /// Load subtracted from the fixed export, MW.
            pub load_mw: $real,
            /// Fixed cost, $/h.
            pub fixed_cost: $real,
            /// Lowest export, MW.
            pub min_export: $real,
            /// Highest export, MW.
            pub max_export: $real,
            /// Pool offset of the curve.
            pub curve_offset: u32,
            /// Breakpoints of the pool curve (0: unit agent).
            pub curve_len: u32,
            /// Pool offset of the first unit.
            pub unit_offset: u32,
            /// Units in the group.
            pub unit_count: u32,
            /// Scaling flags.
            pub flags: u32,
            /// Padding to the struct's alignment.
            pub _pad: u32,
        }

        /// Mirror of WGSL `HourOut` (see [`HourRecord`]).
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
        pub struct $out {
            /// Mean price, $/MWh.
            pub price: $real,
            /// Agent 0's export, MW.
            pub exchange: $real,
            /// Last price change, $/MWh.
            pub price_change: $real,
            /// Last power change, MW.
            pub power_change: $real,
            /// Last dual change, $/MWh.
            pub dual_change: $real,
            /// |sum of exports|, MW.
            pub balance: $real,
            /// Price spread, $/MWh.
            pub price_spread: $real,
            /// Final exports, MW.
            pub power: [$real; MAX_AGENTS],
            /// Costs at the final exports, $/h.
            pub cost: [$real; MAX_AGENTS],
            /// Iterations performed.
            pub iterations: u32,
            /// 1 when converged.
            pub converged: u32,
            /// Messages an attack altered.
            pub tampered: u32,
            /// Altered messages the ledger rejected.
            pub rejected: u32,
            /// [`KernelFault`] code of an unknown code met (0: none).
            pub fault: u32,
            /// The unknown code.
            pub fault_code: u32,
        }

        /// Mirror of WGSL `RunOut` (see [`RunSummary`]).
        #[repr(C)]
        #[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
        pub struct $run_out {
            /// Sum of the hourly prices, $/MWh.
            pub price_sum: $real,
            /// Lowest hourly price, $/MWh.
            pub price_min: $real,
            /// Highest hourly price, $/MWh.
            pub price_max: $real,
            /// Sum of the hourly exchanges, MWh.
            pub exchange_sum: $real,
            /// Each agent's cost summed over the hours, $.
            pub cost_sum: [$real; MAX_AGENTS],
            /// Largest |balance| of an hour, MW.
            pub max_abs_balance: $real,
            /// Iterations summed over the hours.
            pub iterations: u32,
            /// Most iterations of an hour.
            pub iterations_max: u32,
            /// Converged hours.
            pub converged_hours: u32,
            /// Messages an attack altered.
            pub tampered: u32,
            /// Altered messages rejected.
            pub rejected: u32,
            /// The first faulting hour's [`KernelFault`] code (0: none).
            pub fault: u32,
            /// Its code.
            pub fault_code: u32,
            /// The faulting hour.
            pub fault_hour: u32,
        }

        /// Marker of the kernel's layout in this precision.
        #[derive(Debug, Clone, Copy)]
        pub struct $layout;

        impl Layout for $layout {
            type Real = $real;
            type Run = $run;
            type Attack = $attack;
            type Slot = $slot;
            type Hour = $hour;
            type Out = $out;
            const PRECISION: Precision = $prec;

            fn real(x: f64) -> $real {
                x as $real
            }

            fn run(b: &Batch, i: usize, trajectory_offset: u32, hourly_offset: u32) -> $run {
                let s = &b.rci[i];
                let r = |x: f64| x as $real;
                $run {
                    chi: r(s.chi),
                    kappa: r(s.kappa),
                    kappa_decay: r(s.kappa_decay),
                    newton_damping: r(s.newton_damping),
                    slope_floor: r(s.slope_floor),
                    xi: r(s.xi),
                    relax_gamma: r(s.relax_gamma),
                    price_tol: r(s.price_tol),
                    power_tol: r(s.power_tol),
                    dual_tol: r(s.dual_tol),
                    balance_tol: r(s.balance_tol),
                    initial_price: r(s.initial_price),
                    renewable_scale: r(b.renewable_scale[i]),
                    mg_load_scale: r(b.mg_load_scale[i]),
                    max_iterations: s.max_iterations,
                    step_rule: step_rule_code(s.step_rule),
                    power_update: power_update_code(s.power_update),
                    curve_set: b.sg_curve_set[i],
                    trajectory_offset,
                    dual_update: dual_update_code(s.dual_update),
                    hourly_offset,
                    start_price: start_price_code(s.start_price),
                    defence: b.defence[i].code(),
                    _pad: 0,
                }
            }

            fn hour(h: &HourInput) -> $hour {
                $hour {
                    unit_pmax: h.unit_pmax.map(|x| x as $real),
                    load_mw: h.load_mw as $real,
                    sg_weight: h.sg_weight as $real,
                    slot_base: h.slot_base,
                    _pad: 0,
                }
            }

            fn attack(a: &AttackSlot) -> $attack {
                $attack {
                    variable: a.variable,
                    agent: a.agent,
                    hours: a.hours,
                    first: a.first,
                    last: a.last,
                    shape: a.shape,
                    ramp_iterations: a.ramp_iterations,
                    key: a.key,
                    size: a.size as $real,
                }
            }

            fn slot(s: &AgentSlot) -> $slot {
                $slot {
                    fixed_export_mw: s.fixed_export_mw as $real,
                    load_mw: s.load_mw as $real,
                    fixed_cost: s.fixed_cost as $real,
                    min_export: s.min_export as $real,
                    max_export: s.max_export as $real,
                    curve_offset: s.curve_offset,
                    curve_len: s.curve_len,
                    unit_offset: s.unit_offset,
                    unit_count: s.unit_count,
                    flags: s.flags,
                    _pad: 0,
                }
            }

            fn record(o: &$out) -> HourRecord {
                let mut agent_power = [0.0; MAX_AGENTS];
                let mut agent_cost = [0.0; MAX_AGENTS];
                for a in 0..MAX_AGENTS {
                    agent_power[a] = o.power[a].into();
                    agent_cost[a] = o.cost[a].into();
                }
                HourRecord {
                    price: o.price.into(),
                    exchange_mw: o.exchange.into(),
                    agent_power,
                    agent_cost,
                    iterations: o.iterations,
                    converged: o.converged != 0,
                    residuals: Residuals {
                        price_change: o.price_change.into(),
                        power_change: o.power_change.into(),
                        dual_change: o.dual_change.into(),
                        balance: o.balance.into(),
                        price_spread: o.price_spread.into(),
                    },
                    tampered: o.tampered,
                    rejected: o.rejected,
                }
            }

            fn fault(o: &$out) -> (u32, u32) {
                (o.fault, o.fault_code)
            }

            type RunOut = $run_out;

            fn summary(o: &$run_out) -> RunSummary {
                RunSummary {
                    price_sum: o.price_sum.into(),
                    price_min: o.price_min.into(),
                    price_max: o.price_max.into(),
                    exchange_mwh: o.exchange_sum.into(),
                    agent_cost: o.cost_sum.map(Into::into),
                    max_abs_balance: o.max_abs_balance.into(),
                    iterations: o.iterations,
                    iterations_max: o.iterations_max,
                    converged_hours: o.converged_hours,
                    tampered: o.tampered,
                    rejected: o.rejected,
                }
            }

            fn run_fault(o: &$run_out) -> (u32, u32, u32) {
                (o.fault, o.fault_code, o.fault_hour)
            }
        }
    };
}

mirrors!(
    Layout32,
    f32,
    Precision::F32,
    RunParams32,
    AttackSlot32,
    AgentSlot32,
    HourIn32,
    HourOut32,
    RunOut32
);
mirrors!(
    Layout64,
    f64,
    Precision::F64,
    RunParams64,
    AttackSlot64,
    AgentSlot64,
    HourIn64,
    HourOut64,
    RunOut64
);

/// What a compiled kernel contains: the values of the kernel's pipeline-overridable
/// constants `ATTACKS` and `BLEND`. The host compiles a variant on its first use and picks
/// the smallest that accepts a chunk ([`KernelVariant::of`]). Every variant computes the
/// same function on the hours it accepts (the equivalence harness runs the variants its
/// batches need; a unit test compares them with the full kernel bitwise), and an hour
/// that needs what its variant lacks stops with [`KernelFault::KernelVariant`].
///
/// Why: a SIMD driver such as lavapipe executes both sides of every branch under a mask,
/// so code that no hour of a chunk takes still costs. Without the attack machinery and
/// the blend's second curve read, the attack-free bench day runs 1.6x faster in f32 and
/// 1.9x in f64 there (`results/roofline.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelVariant {
    /// The attack machinery: slots, views, tampered and rejected counts.
    pub attacks: bool,
    /// The blend of a pool curve with the next load-table level's (per-hour inputs).
    pub blend: bool,
}

impl KernelVariant {
    /// Everything compiled in: accepts every hour.
    pub const FULL: KernelVariant = KernelVariant {
        attacks: true,
        blend: true,
    };

    /// The smallest variant that accepts runs `runs` of `batch`: attacks if any of their
    /// slots is filled (`variable != 0`), the blend if any of their per-hour inputs blends.
    pub fn of(batch: &Batch, runs: Range<usize>) -> KernelVariant {
        let hours = batch.hours();
        let attacks = runs
            .clone()
            .any(|r| batch.attacks[r].iter().any(|s| s.variable != 0));
        let blend = runs.into_iter().any(|r| match batch.hourly_offset[r] {
            NO_HOURLY => false,
            o => batch.hourly[o as usize..o as usize + hours]
                .iter()
                .any(|h| h.sg_weight != 0.0),
        });
        KernelVariant { attacks, blend }
    }

    /// The kernel's overridable constants for this variant.
    fn constants(self) -> [(&'static str, f64); 2] {
        let flag = |b: bool| if b { 1.0 } else { 0.0 };
        [("ATTACKS", flag(self.attacks)), ("BLEND", flag(self.blend))]
    }
}

/// An entry point of the kernel's module, as a pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    /// `main`, the negotiation, in a variant, with workgroups of this many invocations.
    Rci(KernelVariant, u32),
    /// `reduce_runs`, the runs' summaries, with workgroups of this many invocations.
    Reduce(u32),
    /// `reduce_wide` of the settlement module: f32 records summed in f64.
    ReduceWide(u32),
    /// `settle_values` (f64 records) or `settle_values32` (f32 records) of the settlement
    /// module.
    SettleValues(Precision, u32),
    /// `settle_heads` of the settlement module.
    SettleHeads(u32),
}

/// A kernel's module and layouts, and the pipelines of its entry points, each compiled on
/// first use.
#[derive(Debug)]
struct Kernel {
    precision: Precision,
    module: wgpu::ShaderModule,
    layout: wgpu::PipelineLayout,
    bind_layout: wgpu::BindGroupLayout,
    /// The settlement passes' module ([`settle_source`], on adapters with `SHADER_F64`,
    /// for either precision's records), whose pipelines take their layouts from the
    /// shader.
    settle: Option<wgpu::ShaderModule>,
    pipelines: Mutex<Vec<(Entry, wgpu::ComputePipeline)>>,
}

impl Kernel {
    /// The pipeline of `entry`, compiled now if it is the first use. The lock is held
    /// while compiling, so that threads sharing the context compile each one once.
    fn pipeline(&self, device: &wgpu::Device, entry: Entry) -> Result<wgpu::ComputePipeline> {
        let mut pipelines = self
            .pipelines
            .lock()
            .map_err(|_| gpu_error("the kernel's pipeline cache was poisoned"))?;
        if let Some((_, p)) = pipelines.iter().find(|(e, _)| *e == entry) {
            return Ok(p.clone());
        }
        let (name, constants) = match entry {
            Entry::Rci(variant, wg) => {
                let mut c = variant.constants().to_vec();
                c.push(("WORKGROUP_SIZE", f64::from(wg)));
                ("main", c)
            }
            Entry::Reduce(wg) => ("reduce_runs", vec![("WORKGROUP_SIZE", f64::from(wg))]),
            Entry::ReduceWide(wg) => ("reduce_wide", vec![("WORKGROUP_SIZE", f64::from(wg))]),
            Entry::SettleValues(Precision::F64, wg) => {
                ("settle_values", vec![("WORKGROUP_SIZE", f64::from(wg))])
            }
            Entry::SettleValues(Precision::F32, wg) => {
                ("settle_values32", vec![("WORKGROUP_SIZE", f64::from(wg))])
            }
            Entry::SettleHeads(wg) => ("settle_heads", vec![("WORKGROUP_SIZE", f64::from(wg))]),
        };
        let (module, layout) = match entry {
            Entry::Rci(..) | Entry::Reduce(_) => (&self.module, Some(&self.layout)),
            Entry::ReduceWide(_) | Entry::SettleValues(..) | Entry::SettleHeads(_) => (
                self.settle.as_ref().ok_or_else(|| {
                    gpu_error(format!(
                        "the {:?} kernel has no settlement passes (the adapter has no \
                         SHADER_F64)",
                        self.precision
                    ))
                })?,
                None,
            ),
        };
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(name),
            layout,
            module,
            entry_point: Some(name),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &constants,
                ..Default::default()
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(gpu_error(format!(
                "compiling the {:?} kernel ({entry:?}): {e}",
                self.precision
            )));
        }
        pipelines.push((entry, pipeline.clone()));
        Ok(pipeline)
    }
}

/// The device, queue and pipelines, created once and passed to every GPU run.
#[derive(Debug)]
pub struct GpuContext {
    adapter: wgpu::Adapter,
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: AdapterInfo,
    kernel_f32: Kernel,
    kernel_f64: Option<Kernel>,
    /// Errors the device reported outside an error scope (the default handler panics).
    uncaptured: Arc<Mutex<Vec<String>>>,
    /// Bytes mapped back to the host since the context was made.
    read_back: AtomicU64,
    /// Invocations per workgroup of its dispatches.
    workgroup_size: u32,
}

/// What a chunk reads back to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Readback {
    /// Every (run, hour) record, and the kept trajectories.
    Records,
    /// One [`RunSummary`] per run, reduced on the device; the records stay there.
    Summaries,
    /// The summaries and each run's settlement head, hashed on the device (f64 only); the
    /// batch's runs carry these run numbers in their chains.
    Heads(Arc<[u64]>),
}

impl Readback {
    /// Whether the chunk's runs are reduced on the device (no record comes back).
    fn reduced(&self) -> bool {
        !matches!(self, Readback::Records)
    }
}

/// Rank of an adapter when none is named: real GPUs first, then software rasterizers.
fn device_rank(t: wgpu::DeviceType) -> u32 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

fn backend_rank(b: wgpu::Backend) -> u32 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    }
}

impl GpuContext {
    /// Picks an adapter and builds the context. `adapter_name` (or, when `None`, the
    /// environment variable `WGPU_ADAPTER_NAME`) selects the first adapter whose name
    /// contains it, case-insensitively; otherwise discrete > integrated > virtual > CPU
    /// (Mesa's lavapipe, a valid adapter for tests). Backends: `WGPU_BACKEND`, else the
    /// primary ones (Vulkan, Metal, DX12).
    pub fn new(adapter_name: Option<&str>) -> Result<Self> {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::PRIMARY;
        let desc = desc.with_env();
        let backends = desc.backends;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let env_name = std::env::var("WGPU_ADAPTER_NAME").ok();
        let wanted = adapter_name
            .map(str::to_owned)
            .or(env_name)
            .filter(|s| !s.is_empty());
        let names: Vec<String> = adapters
            .iter()
            .map(|a| {
                let i = a.get_info();
                format!("{} ({:?})", i.name, i.backend)
            })
            .collect();
        let chosen = match &wanted {
            Some(w) => {
                let w = w.to_lowercase();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&w))
            }
            None => adapters.into_iter().min_by_key(|a| {
                let i = a.get_info();
                (device_rank(i.device_type), backend_rank(i.backend))
            }),
        };
        let adapter = chosen.ok_or_else(|| match &wanted {
            Some(w) => gpu_error(format!(
                "no adapter named like {w:?} (available: {names:?})"
            )),
            None => gpu_error(format!(
                "no adapter on backends {backends:?}; install a GPU driver or Mesa's \
                 lavapipe, or set WGPU_BACKEND"
            )),
        })?;
        Self::from_adapter(adapter)
    }

    /// Builds the context on a given adapter: requests a device with the adapter's limits
    /// (and `SHADER_F64` when offered) and parses the kernels
    /// (each [`KernelVariant`] is compiled on its first use).
    pub fn from_adapter(adapter: wgpu::Adapter) -> Result<Self> {
        let features = adapter.features() & wgpu::Features::SHADER_F64;
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("p2pmarket engine"),
            required_features: features,
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| gpu_error(format!("requesting a device: {e}")))?;
        Self::from_device(adapter, device, queue)
    }

    /// Builds the context on a device the caller created (tests may supply their own).
    pub fn from_device(
        adapter: wgpu::Adapter,
        device: wgpu::Device,
        queue: wgpu::Queue,
    ) -> Result<Self> {
        let uncaptured = Arc::new(Mutex::new(Vec::new()));
        let sink = uncaptured.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        let i = adapter.get_info();
        let info = AdapterInfo {
            name: i.name,
            device_type: format!("{:?}", i.device_type),
            driver: i.driver,
            driver_info: i.driver_info,
            backend: format!("{:?}", i.backend),
        };
        let settle = Self::settle_module(&device)?;
        let kernel_f32 = Self::kernel(&device, Precision::F32, settle.clone())?;
        let kernel_f64 = if device.features().contains(wgpu::Features::SHADER_F64) {
            Some(Self::kernel(&device, Precision::F64, settle)?)
        } else {
            None
        };
        Ok(GpuContext {
            adapter,
            device,
            queue,
            info,
            kernel_f32,
            kernel_f64,
            uncaptured,
            read_back: AtomicU64::new(0),
            workgroup_size: WORKGROUP_SIZE,
        })
    }

    /// The settlement passes' module, compiled once and shared by both kernels (it computes
    /// in f64, so only on adapters with `SHADER_F64`).
    fn settle_module(device: &wgpu::Device) -> Result<Option<wgpu::ShaderModule>> {
        if !device.features().contains(wgpu::Features::SHADER_F64) {
            return Ok(None);
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("settle.wgsl"),
            source: wgpu::ShaderSource::Wgsl(Cow::Owned(settle_source())),
        });
        match pollster::block_on(scope.pop()) {
            Some(e) => Err(gpu_error(format!("compiling the settlement passes: {e}"))),
            None => Ok(Some(module)),
        }
    }

    fn kernel(
        device: &wgpu::Device,
        precision: Precision,
        settle: Option<wgpu::ShaderModule>,
    ) -> Result<Kernel> {
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("rci.wgsl"),
            source: wgpu::ShaderSource::Wgsl(Cow::Owned(shader_source(precision))),
        });
        let storage = |binding: u32, read_only: bool| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let bind_layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("rci bindings"),
            entries: &[
                wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    count: None,
                },
                storage(1, true),
                storage(2, true),
                storage(3, true),
                storage(4, true),
                storage(5, false),
                storage(6, false),
                storage(7, true),
                storage(8, false),
            ],
        });
        let layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("rci layout"),
            bind_group_layouts: &[Some(&bind_layout)],
            immediate_size: 0,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(gpu_error(format!(
                "compiling the {precision:?} kernel: {e}"
            )));
        }
        Ok(Kernel {
            precision,
            module,
            layout,
            bind_layout,
            settle,
            pipelines: Mutex::new(Vec::new()),
        })
    }

    /// The adapter the context runs on.
    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// The wgpu adapter.
    pub fn adapter(&self) -> &wgpu::Adapter {
        &self.adapter
    }

    /// Whether the adapter is a software rasterizer (device type CPU, such as Mesa's
    /// llvmpipe/lavapipe): it runs the kernel on the same cores as the rayon backend, and
    /// slower, so `--backend auto` does not choose it.
    pub fn is_software(&self) -> bool {
        self.info().device_type == format!("{:?}", wgpu::DeviceType::Cpu)
    }

    /// The context with workgroups of `size` invocations, one of [`WORKGROUP_SIZES`] that
    /// the device allows (default [`WORKGROUP_SIZE`]). Results do not depend on it: each
    /// invocation computes its own (run, hour); it is a speed setting, for measuring which
    /// size suits a device (`p2pmarket bench --workgroup-size`).
    pub fn with_workgroup_size(mut self, size: u32) -> Result<Self> {
        let limits = self.device.limits();
        let max = limits
            .max_compute_invocations_per_workgroup
            .min(limits.max_compute_workgroup_size_x);
        if !WORKGROUP_SIZES.contains(&size) || size > max {
            return Err(Error::invalid(
                "workgroup_size",
                size,
                format!("one of {WORKGROUP_SIZES:?}, at most {max} on this device"),
            ));
        }
        self.workgroup_size = size;
        Ok(self)
    }

    /// Invocations per workgroup of this context's dispatches.
    pub fn workgroup_size(&self) -> u32 {
        self.workgroup_size
    }

    /// Whether the f64 kernel is available.
    pub fn supports_f64(&self) -> bool {
        self.kernel_f64.is_some()
    }

    /// Evaluates a batch with the default chunking.
    pub fn run(&self, batch: &Batch, precision: Precision) -> Result<BatchOutputs> {
        self.run_chunked(batch, precision, DEFAULT_RUNS_PER_CHUNK)
    }

    /// Evaluates a batch in chunks of at most `max_runs_per_chunk` runs (fewer when the
    /// device's limits require). Results do not depend on the chunk size.
    pub fn run_chunked(
        &self,
        batch: &Batch,
        precision: Precision,
        max_runs_per_chunk: usize,
    ) -> Result<BatchOutputs> {
        let mut all = Collector::new(batch);
        let info = self.run_streaming(batch, precision, max_runs_per_chunk, |c| all.push(c))?;
        Ok(all.finish(info))
    }

    /// Evaluates a batch in chunks of at most `max_runs_per_chunk` runs and hands every
    /// chunk's outputs to `on_chunk` in run order, while the next chunk computes: host
    /// memory holds two chunks, whatever the batch's size. Returns the adapter's
    /// description.
    pub fn run_streaming(
        &self,
        batch: &Batch,
        precision: Precision,
        max_runs_per_chunk: usize,
        on_chunk: impl FnMut(&ChunkOutputs) -> Result<()>,
    ) -> Result<AdapterInfo> {
        self.stream(
            batch,
            precision,
            max_runs_per_chunk,
            on_chunk,
            Readback::Records,
        )
    }

    /// Evaluates a batch like [`GpuContext::run_streaming`] but reads back only each run's
    /// [`RunSummary`], reduced on the device by a second pass over the chunk's records
    /// (which stay there): in f32, 60 bytes per run instead of 24 records of 68. Each
    /// chunk reaches `on_chunk` with its `summaries` and no `records`. The summaries are
    /// [`RunSummary::of`] the records, bitwise in f64; in f32 the device sums in f32. A
    /// batch that keeps trajectories is refused (they are per-hour outputs).
    pub fn run_summaries(
        &self,
        batch: &Batch,
        precision: Precision,
        max_runs_per_chunk: usize,
        on_chunk: impl FnMut(&ChunkOutputs) -> Result<()>,
    ) -> Result<AdapterInfo> {
        no_trajectories(batch)?;
        self.stream(
            batch,
            precision,
            max_runs_per_chunk,
            on_chunk,
            Readback::Summaries,
        )
    }

    /// Evaluates a batch like [`GpuContext::run_summaries`], and also hashes each run's
    /// settlement chain on the device ([`crate::ledger::settlement_head`] over its hours'
    /// price and exchange, run `run_ids[r]` for batch run `r`): a sweep that writes only
    /// its `runs` table then reads back one summary and one head per run, 88 + 36 bytes
    /// instead of 24 records of 112 (f64) or 68 (f32). Each chunk reaches `on_chunk` with
    /// its `summaries` and `heads`, bitwise those the host computes from the records it
    /// would read back: in f32 too, the hours are widened and summed in f64 on the device
    /// (so the summaries differ from [`GpuContext::run_summaries`]'s f32 sums). The
    /// adapter needs `SHADER_F64` in either precision. An hour whose price, exchange or
    /// cost is not finite, or a subnormal value (which a device may flush to zero), is an
    /// error, never a different head or sum.
    pub fn run_summaries_with_heads(
        &self,
        batch: &Batch,
        precision: Precision,
        run_ids: &[u64],
        max_runs_per_chunk: usize,
        on_chunk: impl FnMut(&ChunkOutputs) -> Result<()>,
    ) -> Result<AdapterInfo> {
        if !self.supports_f64() {
            return Err(gpu_error(format!(
                "adapter {} has no SHADER_F64, which the settlement passes need",
                self.info.name
            )));
        }
        if run_ids.len() != batch.runs() {
            return Err(Error::invalid(
                "run_ids",
                run_ids.len(),
                format!("one run number per run of the batch ({})", batch.runs()),
            ));
        }
        no_trajectories(batch)?;
        self.stream(
            batch,
            precision,
            max_runs_per_chunk,
            on_chunk,
            Readback::Heads(run_ids.into()),
        )
    }

    /// Bytes mapped back to the host by this context's runs so far (records, summaries
    /// and trajectories), for tests and benchmarks of what crosses the bus.
    pub fn bytes_read_back(&self) -> u64 {
        self.read_back.load(Ordering::Relaxed)
    }

    fn stream(
        &self,
        batch: &Batch,
        precision: Precision,
        max_runs_per_chunk: usize,
        mut on_chunk: impl FnMut(&ChunkOutputs) -> Result<()>,
        readback: Readback,
    ) -> Result<AdapterInfo> {
        match precision {
            Precision::F32 => self.run_layout::<Layout32>(
                batch,
                &self.kernel_f32,
                max_runs_per_chunk,
                &mut on_chunk,
                &|_, _| {},
                None,
                readback,
            )?,
            Precision::F64 => {
                let k = self.kernel_f64.as_ref().ok_or_else(|| {
                    gpu_error(format!(
                        "adapter {} has no SHADER_F64 (64-bit floats in shaders)",
                        self.info.name
                    ))
                })?;
                self.run_layout::<Layout64>(
                    batch,
                    k,
                    max_runs_per_chunk,
                    &mut on_chunk,
                    &|_, _| {},
                    None,
                    readback,
                )?
            }
        }
        Ok(self.info.clone())
    }

    /// Receives `expected` map callbacks. The submission is complete when this is called,
    /// but the callbacks run inside whichever `poll` picks them up: when several threads
    /// share this context (a test harness, a caller's thread pool), that can be another
    /// thread's poll, still running after ours returned. So wait for them, polling again,
    /// up to [`MAP_TIMEOUT`].
    fn await_mapped(
        &self,
        mapped: &mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
        expected: usize,
    ) -> Result<()> {
        let deadline = Instant::now() + MAP_TIMEOUT;
        let mut received = 0;
        while received < expected {
            match mapped.recv_timeout(Duration::from_millis(1)) {
                Ok(r) => {
                    r.map_err(|e| gpu_error(format!("mapping the readback: {e}")))?;
                    received += 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {
                    self.device
                        .poll(wgpu::PollType::Poll)
                        .map_err(|e| gpu_error(format!("polling for the readback: {e}")))?;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(gpu_error(format!(
                        "readback was not mapped {} s after its submission completed",
                        MAP_TIMEOUT.as_secs()
                    )));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(gpu_error("readback callback was dropped unanswered"));
                }
            }
        }
        Ok(())
    }

    fn take_uncaptured(&self) -> Result<()> {
        let mut v = self
            .uncaptured
            .lock()
            .map_err(|_| gpu_error("error log poisoned"))?;
        if v.is_empty() {
            Ok(())
        } else {
            let msg = v.join("; ");
            v.clear();
            Err(gpu_error(msg))
        }
    }

    /// Runs the batch in layout `L`. Test hooks: `repack` may alter a chunk's packed runs
    /// and attack slots before they are uploaded (the kernel fed codes the host never
    /// packs), and `variant` replaces [`KernelVariant::of`]'s choice (a variant that lacks
    /// what the chunk needs).
    #[allow(clippy::too_many_arguments)]
    fn run_layout<L: Layout>(
        &self,
        batch: &Batch,
        kernel: &Kernel,
        max_runs_per_chunk: usize,
        on_chunk: &mut dyn FnMut(&ChunkOutputs) -> Result<()>,
        repack: Repack<'_, L>,
        variant: Option<KernelVariant>,
        readback: Readback,
    ) -> Result<()> {
        let limits = self.device.limits();
        let sizes = ChunkSizes::of::<L>(batch);
        let chunks = plan_chunks(
            batch,
            &sizes,
            &DeviceLimits::from(&limits),
            max_runs_per_chunk,
        )?;
        let dev = &self.device;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = dev.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let slots: Vec<L::Slot> = batch.slots.iter().map(L::slot).collect();
        let pool: Vec<L::Real> = batch.pool.iter().map(|&x| L::real(x)).collect();
        let slots_buf = storage_init(dev, "slots", bytemuck::cast_slice(&slots));
        let pool_buf = storage_init(dev, "pool", bytemuck::cast_slice(&pool));
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        // One host buffer for every chunk's outputs: a fresh 40 MB allocation per chunk
        // costs more in page faults than the unpacking itself.
        let mut chunk = ChunkOutputs {
            runs: 0..0,
            records: Vec::new(),
            trajectories: Vec::new(),
            summaries: Vec::new(),
            heads: Vec::new(),
        };
        let result = (|| -> Result<()> {
            for range in chunks {
                in_flight.push_back(self.submit_chunk::<L>(
                    batch,
                    kernel,
                    &slots_buf,
                    &pool_buf,
                    range,
                    &limits,
                    repack,
                    variant,
                    readback.clone(),
                )?);
                // Two chunks in flight: the next is queued before this one is read back.
                if in_flight.len() >= 2
                    && let Some(done) = in_flight.pop_front()
                {
                    self.finish_chunk::<L>(batch, done, &mut chunk)?;
                    on_chunk(&chunk)?;
                }
            }
            while let Some(done) = in_flight.pop_front() {
                self.finish_chunk::<L>(batch, done, &mut chunk)?;
                on_chunk(&chunk)?;
            }
            Ok(())
        })();
        let oom = pollster::block_on(oom.pop());
        let val = pollster::block_on(scope.pop());
        if let Some(e) = oom.or(val) {
            return Err(gpu_error(e.to_string()));
        }
        self.take_uncaptured()?;
        result
    }

    // The chunk's inputs and the test hook; a struct for them would only be unpacked here.
    #[allow(clippy::too_many_arguments)]
    fn submit_chunk<L: Layout>(
        &self,
        batch: &Batch,
        kernel: &Kernel,
        slots_buf: &wgpu::Buffer,
        pool_buf: &wgpu::Buffer,
        runs: Range<usize>,
        limits: &wgpu::Limits,
        repack: Repack<'_, L>,
        variant: Option<KernelVariant>,
        readback: Readback,
    ) -> Result<InFlight> {
        let dev = &self.device;
        let variant = variant.unwrap_or_else(|| KernelVariant::of(batch, runs.clone()));
        let wg = self.workgroup_size;
        let pipeline = kernel.pipeline(dev, Entry::Rci(variant, wg))?;
        let hours = batch.hours();
        let items = runs.len() * hours;
        let mut traj_reals = 0usize;
        let mut traj_runs = Vec::new();
        let mut hourly: Vec<L::Hour> = Vec::new();
        let mut params: Vec<L::Run> = runs
            .clone()
            .map(|r| {
                let offset = if batch.trajectory[r] {
                    let o = traj_reals;
                    traj_reals += trajectory_reals(batch, r);
                    traj_runs.push((r, o));
                    o as u32
                } else {
                    NO_TRAJECTORY
                };
                let hourly_offset = match batch.hourly_offset[r] {
                    NO_HOURLY => NO_HOURLY,
                    o => {
                        let first = hourly.len() as u32;
                        let rows = &batch.hourly[o as usize..o as usize + hours];
                        hourly.extend(rows.iter().map(L::hour));
                        first
                    }
                };
                L::run(batch, r, offset, hourly_offset)
            })
            .collect();
        // MAX_ATTACKS slots per run: slot k of the chunk's run r at r * MAX_ATTACKS + k.
        let mut attacks: Vec<L::Attack> = runs
            .clone()
            .flat_map(|r| batch.attacks[r].iter().map(L::attack))
            .collect();
        repack(&mut params, &mut attacks);
        let max_dim = limits.max_compute_workgroups_per_dimension;
        let (gx, gy) = workgroup_grid(items, wg, max_dim);
        let chunk = ChunkParams {
            items: items as u32,
            hours: hours as u32,
            agents: batch.agents() as u32,
            groups_x: gx,
            loop_probe: LOOP_PROBE,
        };
        let params_buf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("chunk params"),
            contents: bytemuck::bytes_of(&chunk),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let runs_buf = storage_init(dev, "runs", bytemuck::cast_slice(&params));
        let attacks_buf = storage_init(dev, "attacks", bytemuck::cast_slice(&attacks));
        if hourly.is_empty() {
            // A binding holds at least one element of its array.
            hourly.push(L::Hour::zeroed());
        }
        let hourly_buf = storage_init(dev, "hourly", bytemuck::cast_slice(&hourly));
        let out_bytes = (items * size_of::<L::Out>()) as u64;
        let traj_bytes = (traj_reals.max(1) * size_of::<L::Real>()) as u64;
        let out_buf = storage_out(dev, "outputs", out_bytes);
        let traj_buf = storage_out(dev, "trajectory", traj_bytes);
        let summaries = readback.reduced();
        // The summaries' buffer (one struct when unused: a binding holds at least one).
        let run_bytes = (runs.len().max(1) * size_of::<L::RunOut>()) as u64;
        let run_buf = storage_out(dev, "run summaries", run_bytes);
        // What comes back: the records, or the summaries alone, followed by the heads when
        // asked for.
        let heads_bytes = match &readback {
            Readback::Heads(_) => (runs.len().max(1) * HEAD_WORDS * 4) as u64,
            _ => 0,
        };
        // f32 records with heads are summed in f64 by the settlement module, as the host
        // sums them, into f64 summaries.
        let wide = wide_summaries::<L>(&readback);
        let wide_bytes = (runs.len().max(1) * size_of::<RunOut64>()) as u64;
        let wide_buf = wide.then(|| storage_out(dev, "wide run summaries", wide_bytes));
        let (read_src, read_bytes) = match (&wide_buf, summaries) {
            (Some(w), _) => (w, wide_bytes),
            (None, true) => (&run_buf, run_bytes),
            (None, false) => (&out_buf, out_bytes),
        };
        let read = readback_buffer(dev, "readback", read_bytes + heads_bytes);
        let traj_read =
            (traj_reals > 0).then(|| readback_buffer(dev, "trajectory readback", traj_bytes));
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("rci chunk"),
            layout: &kernel.bind_layout,
            entries: &[
                entry(0, &params_buf),
                entry(1, &runs_buf),
                entry(2, &attacks_buf),
                entry(3, slots_buf),
                entry(4, pool_buf),
                entry(5, &out_buf),
                entry(6, &traj_buf),
                entry(7, &hourly_buf),
                entry(8, &run_buf),
            ],
        });
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("rci chunk"),
        });
        dispatch(&mut enc, &pipeline, &bind, (gx, gy));
        if summaries && !wide {
            // A second pass: the first's records are complete when it starts.
            let reduce = kernel.pipeline(dev, Entry::Reduce(wg))?;
            dispatch(
                &mut enc,
                &reduce,
                &bind,
                workgroup_grid(runs.len(), wg, max_dim),
            );
        }
        if let Readback::Heads(run_ids) = &readback {
            let heads_buf = self.settle_chunk(
                &mut enc,
                kernel,
                &out_buf,
                wide_buf.as_ref(),
                run_ids,
                runs.clone(),
                hours,
                max_dim,
            )?;
            enc.copy_buffer_to_buffer(&heads_buf, 0, &read, read_bytes, heads_bytes);
        }
        enc.copy_buffer_to_buffer(read_src, 0, &read, 0, read_bytes);
        if let Some(tr) = &traj_read {
            enc.copy_buffer_to_buffer(&traj_buf, 0, tr, 0, traj_bytes);
        }
        let submission = self.queue.submit([enc.finish()]);
        let (tx, rx) = mpsc::channel();
        let mut expected = 0;
        for read in std::iter::once(&read).chain(&traj_read) {
            let tx = tx.clone();
            read.map_async(wgpu::MapMode::Read, .., move |r| {
                let _ = tx.send(r);
            });
            expected += 1;
        }
        Ok(InFlight {
            runs,
            submission,
            read,
            summary_bytes: read_bytes as usize,
            readback,
            traj_read,
            traj_runs,
            mapped: rx,
            expected,
        })
    }

    /// The mapped contents of a readback buffer (`what` names them in errors), counted in
    /// [`GpuContext::bytes_read_back`].
    fn mapped(&self, buffer: &wgpu::Buffer, what: &str) -> Result<wgpu::BufferView> {
        let view = buffer
            .get_mapped_range(..)
            .map_err(|e| gpu_error(format!("reading {what}: {e}")))?;
        self.read_back
            .fetch_add(view.len() as u64, Ordering::Relaxed);
        Ok(view)
    }

    /// Records the settlement passes of a chunk whose records are in `records` (`kernel`'s
    /// `HourOut`s of runs `runs`, numbered `run_ids[r]` in their chains), and returns the
    /// buffer of their heads ([`HEAD_WORDS`] words per run). With `wide` (f32 records),
    /// the runs' summaries are first summed there in f64 (`reduce_wide`).
    #[allow(clippy::too_many_arguments)]
    fn settle_chunk(
        &self,
        enc: &mut wgpu::CommandEncoder,
        kernel: &Kernel,
        records: &wgpu::Buffer,
        wide: Option<&wgpu::Buffer>,
        run_ids: &[u64],
        runs: Range<usize>,
        hours: usize,
        max_dim: u32,
    ) -> Result<wgpu::Buffer> {
        let dev = &self.device;
        let wg = self.workgroup_size;
        let items = runs.len() * hours;
        let params = |invocations: usize| {
            let (gx, gy) = workgroup_grid(invocations, wg, max_dim);
            let p = SettleParams {
                items: items as u32,
                hours: hours as u32,
                groups_x: gx,
                loop_probe: LOOP_PROBE,
            };
            let buf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("settle params"),
                contents: bytemuck::bytes_of(&p),
                usage: wgpu::BufferUsages::UNIFORM,
            });
            (buf, (gx, gy))
        };
        // h_0 of every run, computed here: one block per run.
        let starts: Vec<u32> = runs
            .clone()
            .flat_map(|r| {
                let h0 = crate::ledger::chain_start(run_ids[r]);
                (0..8).map(move |i| {
                    u32::from_be_bytes([h0[4 * i], h0[4 * i + 1], h0[4 * i + 2], h0[4 * i + 3]])
                })
            })
            .collect();
        let starts_buf = storage_init(dev, "chain starts", bytemuck::cast_slice(&starts));
        // Price, exchange, cost and flag of every item, in f64 (`SETTLED` in the shader).
        let settled_buf = storage_out(dev, "settled values", (items.max(1) * 4 * 8) as u64);
        let heads_buf = storage_out(
            dev,
            "settlement heads",
            (runs.len().max(1) * HEAD_WORDS * 4) as u64,
        );
        let (run_params, run_grid) = params(runs.len());
        if let Some(wide) = wide {
            let reduce = kernel.pipeline(dev, Entry::ReduceWide(wg))?;
            let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("reduce wide"),
                layout: &reduce.get_bind_group_layout(0),
                entries: &[entry(0, &run_params), entry(7, records), entry(8, wide)],
            });
            dispatch(enc, &reduce, &bind, run_grid);
        }
        let values = kernel.pipeline(dev, Entry::SettleValues(kernel.precision, wg))?;
        let (item_params, item_grid) = params(items);
        // The records' binding: f64 `HourOut`s at 1, f32 ones (as f32 words) at 7.
        let records_binding = match kernel.precision {
            Precision::F64 => 1,
            Precision::F32 => 7,
        };
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("settle values"),
            layout: &values.get_bind_group_layout(0),
            entries: &[
                entry(0, &item_params),
                entry(records_binding, records),
                entry(2, &settled_buf),
            ],
        });
        dispatch(enc, &values, &bind, item_grid);
        let heads = kernel.pipeline(dev, Entry::SettleHeads(wg))?;
        let heads_grid = run_grid;
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("settle heads"),
            layout: &heads.get_bind_group_layout(0),
            entries: &[
                entry(0, &run_params),
                entry(4, &settled_buf),
                entry(5, &starts_buf),
                entry(6, &heads_buf),
            ],
        });
        dispatch(enc, &heads, &bind, heads_grid);
        Ok(heads_buf)
    }

    /// Reads a finished chunk back into `chunk`, replacing its contents.
    fn finish_chunk<L: Layout>(
        &self,
        batch: &Batch,
        done: InFlight,
        chunk: &mut ChunkOutputs,
    ) -> Result<()> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(done.submission),
                timeout: None,
            })
            .map_err(|e| gpu_error(format!("waiting for a chunk: {e}")))?;
        self.await_mapped(&done.mapped, done.expected)?;
        self.take_uncaptured()?;
        chunk.records.clear();
        chunk.summaries.clear();
        chunk.trajectories.clear();
        chunk.heads.clear();
        if done.readback.reduced() {
            let view = self.mapped(&done.read, "the run summaries")?;
            let summaries = &view[..done.summary_bytes];
            let runs = if wide_summaries::<L>(&done.readback) {
                read_summaries::<Layout64>(summaries, done.runs.clone(), &mut chunk.summaries)?
            } else {
                read_summaries::<L>(summaries, done.runs.clone(), &mut chunk.summaries)?
            };
            if matches!(done.readback, Readback::Heads(_)) {
                let words: Vec<u32> = bytemuck::pod_collect_to_vec(&view[done.summary_bytes..]);
                for (i, run) in words.chunks_exact(HEAD_WORDS).take(runs).enumerate() {
                    if run[8] == 2 {
                        return Err(gpu_error(format!(
                            "run {}: the Vulkan driver cut the settlement pass's loops short \
                             (its probe ran fewer than {LOOP_PROBE} iterations); keep the hours \
                             (run_hours = true) to hash them on the host",
                            done.runs.start + i
                        )));
                    }
                    if run[8] != 0 {
                        return Err(Error::Solver {
                            problem: "GPU engine, settlement heads".into(),
                            message: format!(
                                "run {} of the batch has an hour whose price, exchange or \
                                 cost is not finite or is subnormal, which the device does \
                                 not hash: keep the hours (run_hours = true) to hash them on \
                                 the host",
                                done.runs.start + i
                            ),
                        });
                    }
                    let mut head = [0u8; 32];
                    for (bytes, w) in head.chunks_exact_mut(4).zip(&run[..8]) {
                        bytes.copy_from_slice(&w.to_be_bytes());
                    }
                    chunk.heads.push(head);
                }
            }
            drop(view);
            done.read.unmap();
            chunk.runs = done.runs;
            return Ok(());
        }
        let view = self.mapped(&done.read, "the outputs")?;
        let n = done.runs.len() * batch.hours();
        // Mapped ranges start MAP_ALIGNMENT (8)-aligned, enough for every output struct,
        // and the buffer holds whole structs.
        let outs = bytemuck::try_cast_slice::<u8, L::Out>(&view)
            .map_err(|e| gpu_error(format!("reading the outputs: {e}")))?;
        let records = &mut chunk.records;
        unpack_records::<L>(&outs[..n.min(outs.len())], records);
        if let Some((i, (fault, code))) = outs
            .iter()
            .take(n)
            .map(L::fault)
            .enumerate()
            .find(|(_, f)| f.0 != 0)
        {
            let hours = batch.hours();
            return Err(fault_error(
                done.runs.start + i / hours,
                i % hours,
                fault,
                code,
            ));
        }
        drop(view);
        done.read.unmap();
        if let Some(tr) = done.traj_read {
            let view = self.mapped(&tr, "the trajectories")?;
            let reals: Vec<L::Real> = bytemuck::pod_collect_to_vec(&view);
            drop(view);
            tr.unmap();
            for &(run, offset) in &done.traj_runs {
                let first = (run - done.runs.start) * batch.hours();
                chunk.trajectories.push(unpack_trajectory::<L>(
                    batch,
                    &records[first..first + batch.hours()],
                    run,
                    &reals[offset..],
                ));
            }
        }
        chunk.runs = done.runs;
        Ok(())
    }
}

/// Appends the run summaries of layout `M` in `bytes` (a chunk of runs `runs`) to `out`,
/// and returns how many there were; the first run with a fault is an error.
fn read_summaries<M: Layout>(
    bytes: &[u8],
    runs: Range<usize>,
    out: &mut Vec<RunSummary>,
) -> Result<usize> {
    let outs = bytemuck::try_cast_slice::<u8, M::RunOut>(bytes)
        .map_err(|e| gpu_error(format!("reading the run summaries: {e}")))?;
    let outs = &outs[..runs.len().min(outs.len())];
    if let Some((i, (fault, code, hour))) = outs
        .iter()
        .map(M::run_fault)
        .enumerate()
        .find(|(_, f)| f.0 != 0)
    {
        if fault == SUBNORMAL_FAULT {
            return Err(gpu_error(format!(
                "run {}, hour {hour}: a subnormal f32 value, which the device may flush to \
                 zero when it widens it, cannot be summed on the device as the host sums it; \
                 keep the hours (run_hours = true)",
                runs.start + i
            )));
        }
        return Err(fault_error(runs.start + i, hour as usize, fault, code));
    }
    out.extend(outs.iter().map(M::summary));
    Ok(outs.len())
}

/// Unpacks a chunk's outputs into `records`, replacing its contents and reusing its
/// allocation, in parallel over the host's threads (rayon writes an indexed iterator
/// straight into the vector's spare capacity, in order). One thread unpacked about 5.6 M
/// runs/s on the CI-class VM, a ceiling a fast GPU would meet (`cargo bench --bench
/// engine`).
pub fn unpack_records<L: Layout>(outs: &[L::Out], records: &mut Vec<HourRecord>) {
    records.clear();
    records.par_extend(outs.par_iter().with_min_len(1024).map(L::record));
}

/// Reals of one run's trajectory: 4 per agent per iteration (and the start) per hour.
fn trajectory_reals(batch: &Batch, run: usize) -> usize {
    batch.hours() * (batch.rci[run].max_iterations as usize + 1) * batch.agents() * 4
}

/// Unpacks one run's trajectory; `run_records` are the records of its hours.
fn unpack_trajectory<L: Layout>(
    batch: &Batch,
    run_records: &[HourRecord],
    run: usize,
    reals: &[L::Real],
) -> RunTrajectory {
    let (hours, n) = (batch.hours(), batch.agents());
    let per_hour = (batch.rci[run].max_iterations as usize + 1) * n * 4;
    let hours_out = (0..hours)
        .map(|h| {
            let iters = run_records[h].iterations as usize;
            let base = &reals[h * per_hour..];
            (0..=iters)
                .flat_map(|k| {
                    (0..n).map(move |a| {
                        let o = (k * n + a) * 4;
                        TrajectoryPoint {
                            iteration: k as u32,
                            agent: a as u32,
                            state: AgentState {
                                price: base[o].into(),
                                power: base[o + 1].into(),
                                dual_upper: base[o + 2].into(),
                                dual_lower: base[o + 3].into(),
                            },
                        }
                    })
                })
                .collect()
        })
        .collect();
    RunTrajectory {
        run,
        hours: hours_out,
    }
}

/// Alters a chunk's packed runs and attack slots before the upload ([`GpuContext`]'s
/// `run_layout`).
type Repack<'a, L> = &'a dyn Fn(&mut [<L as Layout>::Run], &mut [<L as Layout>::Attack]);

/// A submitted chunk waiting for its readback.
struct InFlight {
    runs: Range<usize>,
    submission: wgpu::SubmissionIndex,
    /// The records, or the summaries ([`Readback`]) and the heads after them.
    read: wgpu::Buffer,
    /// Bytes of `read` before the heads.
    summary_bytes: usize,
    readback: Readback,
    traj_read: Option<wgpu::Buffer>,
    traj_runs: Vec<(usize, usize)>,
    mapped: mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
    expected: usize,
}

/// The 2-D grid of workgroups of `size` invocations for `invocations`: along x up to
/// `max_dim`, then rows.
fn workgroup_grid(invocations: usize, size: u32, max_dim: u32) -> (u32, u32) {
    let groups = invocations.div_ceil(size as usize) as u32;
    if groups <= max_dim {
        (groups, 1)
    } else {
        (max_dim, groups.div_ceil(max_dim))
    }
}

/// Records a compute pass of `pipeline` over a `grid` of workgroups.
fn dispatch(
    enc: &mut wgpu::CommandEncoder,
    pipeline: &wgpu::ComputePipeline,
    bind: &wgpu::BindGroup,
    grid: (u32, u32),
) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("p2pmarket"),
        timestamp_writes: None,
    });
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind, &[]);
    pass.dispatch_workgroups(grid.0, grid.1, 1);
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

fn storage_init(dev: &wgpu::Device, label: &str, bytes: &[u8]) -> wgpu::Buffer {
    // A binding may not be empty.
    let padded;
    let contents = if bytes.is_empty() {
        padded = [0u8; 16];
        &padded[..]
    } else {
        bytes
    };
    dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents,
        usage: wgpu::BufferUsages::STORAGE,
    })
}

fn storage_out(dev: &wgpu::Device, label: &str, size: u64) -> wgpu::Buffer {
    dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

fn readback_buffer(dev: &wgpu::Device, label: &str, size: u64) -> wgpu::Buffer {
    dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    })
}

/// Byte sizes of the per-run and per-item buffers of one precision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChunkSizes {
    /// Bytes of one `RunParams`.
    pub run: u64,
    /// Bytes of one `AttackSlot`.
    pub attack: u64,
    /// Bytes of one `HourOut`.
    pub out: u64,
    /// Bytes of one `HourIn` (a run with per-hour inputs has one per hour).
    pub hour: u64,
    /// Bytes of one `real`.
    pub real: u64,
    /// Bytes of the shared slots buffer.
    pub slots: u64,
    /// Bytes of the shared pool buffer.
    pub pool: u64,
}

impl ChunkSizes {
    /// The sizes of `batch` in layout `L`.
    pub fn of<L: Layout>(batch: &Batch) -> Self {
        ChunkSizes {
            run: size_of::<L::Run>() as u64,
            attack: size_of::<L::Attack>() as u64,
            out: size_of::<L::Out>() as u64,
            hour: size_of::<L::Hour>() as u64,
            real: size_of::<L::Real>() as u64,
            slots: (batch.slots.len() * size_of::<L::Slot>()) as u64,
            pool: (batch.pool.len() * size_of::<L::Real>()) as u64,
        }
    }
}

/// The device limits that bound a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceLimits {
    /// Largest storage-buffer binding, bytes.
    pub max_binding: u64,
    /// Largest buffer, bytes.
    pub max_buffer: u64,
    /// Most workgroups along one dispatch dimension.
    pub max_groups_per_dim: u32,
}

impl From<&wgpu::Limits> for DeviceLimits {
    fn from(l: &wgpu::Limits) -> Self {
        DeviceLimits {
            max_binding: l.max_storage_buffer_binding_size,
            max_buffer: l.max_buffer_size,
            max_groups_per_dim: l.max_compute_workgroups_per_dimension,
        }
    }
}

/// Splits the runs into chunks whose buffers fit `limits` and whose dispatch fits a 2-D
/// grid, with at most `max_runs` runs each. Chunks are consecutive run ranges.
pub fn plan_chunks(
    batch: &Batch,
    sizes: &ChunkSizes,
    limits: &DeviceLimits,
    max_runs: usize,
) -> Result<Vec<Range<usize>>> {
    let cap = limits.max_binding.min(limits.max_buffer);
    for (what, bytes) in [("slots", sizes.slots), ("pool", sizes.pool)] {
        if bytes > cap {
            return Err(gpu_error(format!(
                "the batch's {what} buffer ({bytes} bytes) exceeds the device's limit ({cap} bytes)"
            )));
        }
    }
    let hours = batch.hours() as u64;
    // The smallest workgroup a context accepts, so that a chunk fits any of them.
    let max_items = limits.max_groups_per_dim as u64
        * limits.max_groups_per_dim as u64
        * WORKGROUP_SIZES[0] as u64;
    let per_run_max = [
        cap / (hours * sizes.out),
        cap / (hours * sizes.hour),
        cap / sizes.run,
        cap / sizes.attack,
        max_items / hours,
        u32::MAX as u64 / hours,
        max_runs.max(1) as u64,
    ]
    .into_iter()
    .min()
    .unwrap_or(1);
    if per_run_max == 0 {
        return Err(gpu_error(format!(
            "one run does not fit the device's limits (binding {cap} bytes)"
        )));
    }
    let traj_cap = cap.min(u32::MAX as u64) / sizes.real;
    let mut chunks = Vec::new();
    let (mut start, mut traj) = (0usize, 0u64);
    for r in 0..batch.runs() {
        let t = if batch.trajectory[r] {
            trajectory_reals(batch, r) as u64
        } else {
            0
        };
        if t > traj_cap {
            return Err(Error::invalid(
                format!("runs[{r}].trajectory"),
                format!("{t} values"),
                format!("<= {traj_cap} values on this device (lower rci.max_iterations)"),
            ));
        }
        if (r - start) as u64 >= per_run_max || traj + t > traj_cap {
            chunks.push(start..r);
            start = r;
            traj = 0;
        }
        traj += t;
    }
    chunks.push(start..batch.runs());
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use naga::valid::{Capabilities, ValidationFlags, Validator};

    fn parse(precision: Precision) -> naga::Module {
        naga::front::wgsl::parse_str(&shader_source(precision)).unwrap_or_else(|e| {
            panic!(
                "{precision:?}: {}",
                e.emit_to_string(&shader_source(precision))
            )
        })
    }

    #[test]
    fn kernels_validate_with_naga() {
        for (p, caps) in [
            (Precision::F32, Capabilities::empty()),
            (Precision::F64, Capabilities::FLOAT64),
        ] {
            let module = parse(p);
            Validator::new(ValidationFlags::all(), caps)
                .validate(&module)
                .unwrap_or_else(|e| panic!("{p:?}: {}", e.emit_to_string(&shader_source(p))));
        }
        // The settlement passes (f64 only).
        let settle = naga::front::wgsl::parse_str(&settle_source())
            .unwrap_or_else(|e| panic!("settle: {}", e.emit_to_string(&settle_source())));
        Validator::new(ValidationFlags::all(), Capabilities::FLOAT64)
            .validate(&settle)
            .unwrap_or_else(|e| panic!("settle: {}", e.emit_to_string(&settle_source())));
        // The f64 kernel really needs the capability (no silent f32 fallback).
        let module = parse(Precision::F64);
        assert!(
            Validator::new(ValidationFlags::all(), Capabilities::empty())
                .validate(&module)
                .is_err()
        );
    }

    #[test]
    fn f64_kernel_uses_no_transcendental_builtins() {
        const FORBIDDEN: [&str; 16] = [
            "exp",
            "exp2",
            "log",
            "log2",
            "sin",
            "cos",
            "tan",
            "pow",
            "sinh",
            "cosh",
            "tanh",
            "asin",
            "acos",
            "atan",
            "atan2",
            "inverseSqrt",
        ];
        let src = shader_source(Precision::F64) + &settle_source();
        // Strip comments, then look at whole identifiers only.
        let code: String = src
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let idents: Vec<&str> = code
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|s| !s.is_empty())
            .collect();
        for f in FORBIDDEN {
            assert!(
                !idents.contains(&f),
                "the f64 kernel calls `{f}`, which lavapipe computes wrongly in f64"
            );
        }
        // The scan itself finds a call when there is one.
        assert!(
            "let y = exp(x);"
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|s| s == "exp")
        );
    }

    /// Offsets and size of the WGSL struct `name` as naga lays it out.
    fn wgsl_layout(module: &naga::Module, name: &str) -> (Vec<(String, u32)>, u32, u32) {
        let mut layouter = naga::proc::Layouter::default();
        layouter.update(module.to_ctx()).unwrap();
        for (handle, ty) in module.types.iter() {
            if ty.name.as_deref() == Some(name)
                && let naga::TypeInner::Struct { members, span } = &ty.inner
            {
                let offsets = members
                    .iter()
                    .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
                    .collect();
                return (offsets, *span, layouter[handle].alignment * 1);
            }
        }
        panic!("struct {name} not in the kernel");
    }

    macro_rules! check_layout {
        ($module:expr, $wgsl:literal, $ty:ty, [$($field:ident),*]) => {{
            let (offsets, span, align) = wgsl_layout($module, $wgsl);
            let host: Vec<(String, u32)> = vec![
                $((stringify!($field).to_string(), std::mem::offset_of!($ty, $field) as u32)),*
            ];
            assert_eq!(offsets, host, "{} member offsets", $wgsl);
            assert_eq!(span as usize, size_of::<$ty>(), "{} size", $wgsl);
            assert_eq!(align as usize, align_of::<$ty>(), "{} alignment", $wgsl);
        }};
    }

    /// A run summary's layout: the kernel's `RunOut` and the settlement module's
    /// `RunWide` both mirror the host's `RunOut32` / `RunOut64`.
    macro_rules! check_run_out_layout {
        ($module:expr, $wgsl:literal, $ty:ty) => {
            check_layout!(
                $module,
                $wgsl,
                $ty,
                [
                    price_sum,
                    price_min,
                    price_max,
                    exchange_sum,
                    cost_sum,
                    max_abs_balance,
                    iterations,
                    iterations_max,
                    converged_hours,
                    tampered,
                    rejected,
                    fault,
                    fault_code,
                    fault_hour
                ]
            )
        };
    }

    macro_rules! check_all {
        ($p:expr, $run:ty, $attack:ty, $slot:ty, $hour:ty, $out:ty, $run_out:ty) => {{
            let m = parse($p);
            check_layout!(
                &m,
                "Params",
                ChunkParams,
                [items, hours, agents, groups_x, loop_probe]
            );
            check_layout!(
                &m,
                "RunParams",
                $run,
                [
                    chi,
                    kappa,
                    kappa_decay,
                    newton_damping,
                    slope_floor,
                    xi,
                    relax_gamma,
                    price_tol,
                    power_tol,
                    dual_tol,
                    balance_tol,
                    initial_price,
                    renewable_scale,
                    mg_load_scale,
                    max_iterations,
                    step_rule,
                    power_update,
                    curve_set,
                    trajectory_offset,
                    dual_update,
                    hourly_offset,
                    start_price,
                    defence,
                    _pad
                ]
            );
            check_layout!(
                &m,
                "HourIn",
                $hour,
                [unit_pmax, load_mw, sg_weight, slot_base, _pad]
            );
            check_layout!(
                &m,
                "AttackSlot",
                $attack,
                [
                    variable,
                    agent,
                    hours,
                    first,
                    last,
                    shape,
                    ramp_iterations,
                    key,
                    size
                ]
            );
            check_layout!(
                &m,
                "AgentSlot",
                $slot,
                [
                    fixed_export_mw,
                    load_mw,
                    fixed_cost,
                    min_export,
                    max_export,
                    curve_offset,
                    curve_len,
                    unit_offset,
                    unit_count,
                    flags,
                    _pad
                ]
            );
            check_layout!(
                &m,
                "HourOut",
                $out,
                [
                    price,
                    exchange,
                    price_change,
                    power_change,
                    dual_change,
                    balance,
                    price_spread,
                    power,
                    cost,
                    iterations,
                    converged,
                    tampered,
                    rejected,
                    fault,
                    fault_code
                ]
            );
            check_run_out_layout!(&m, "RunOut", $run_out);
        }};
    }

    /// Feeds the kernel, in layout `$layout`, codes the host never packs: each must come
    /// back as an error naming the code (the kernel's failing defaults), not run as
    /// another code.
    macro_rules! check_faults {
        ($ctx:expr, $batch:expr, $layout:ty, $kernel:expr) => {{
            type Runs = [<$layout as Layout>::Run];
            type Slots = [<$layout as Layout>::Attack];
            let cases: [(&str, &dyn Fn(&mut Runs, &mut Slots)); 7] = [
                ("unknown step rule code 99", &|r, _| r[0].step_rule = 99),
                ("unknown power update code 99", &|r, _| {
                    r[0].power_update = 99
                }),
                ("unknown dual update code 99", &|r, _| r[0].dual_update = 99),
                ("unknown start price code 99", &|r, _| r[0].start_price = 99),
                ("unknown defence code 99", &|r, _| r[0].defence = 99),
                ("unknown attack variable code 99", &|_, a| {
                    a[0].variable = 99
                }),
                ("unknown attack shape code 99", &|_, a| {
                    a[0].variable = AttackVariable::Price.code();
                    a[0].shape = 99;
                }),
            ];
            for (expected, repack) in cases {
                let e = $ctx
                    .run_layout::<$layout>(
                        $batch,
                        $kernel,
                        16,
                        &mut |_| Ok(()),
                        repack,
                        None,
                        Readback::Records,
                    )
                    .expect_err(expected)
                    .to_string();
                assert!(e.contains(expected) && e.contains("run 0, hour 0"), "{e}");
            }
            let mut hours = 0;
            $ctx.run_layout::<$layout>(
                $batch,
                $kernel,
                16,
                &mut |c| {
                    hours += c.records.len();
                    Ok(())
                },
                &|_, _| {},
                None,
                Readback::Records,
            )
            .expect("the batch as packed");
            assert_eq!(hours, $batch.runs() * $batch.hours());
        }};
    }

    /// The default adapter, or `None` after saying loudly that the test skipped (as the
    /// engine_equivalence tests: a failure when P2PMARKET_REQUIRE_GPU=1).
    fn context_or_skip() -> Option<GpuContext> {
        match GpuContext::new(None) {
            Ok(ctx) => Some(ctx),
            Err(e) => {
                let why = format!("no GPU adapter ({e})");
                if std::env::var("P2PMARKET_REQUIRE_GPU").as_deref() == Ok("1") {
                    panic!("GPU required (P2PMARKET_REQUIRE_GPU=1) but {why}");
                }
                eprintln!(
                    "\n*** SKIPPED: {why}; GPU backend NOT tested (set P2PMARKET_REQUIRE_GPU=1 to fail instead) ***\n"
                );
                None
            }
        }
    }

    /// The context of [`context_or_skip`] when its adapter has `SHADER_F64`; a missing f64
    /// skips as loudly, and fails the same way under `P2PMARKET_REQUIRE_GPU=1`.
    fn f64_context_or_skip() -> Option<GpuContext> {
        let ctx = context_or_skip()?;
        if ctx.supports_f64() {
            return Some(ctx);
        }
        let why = format!("adapter {} has no SHADER_F64", ctx.info().name);
        if std::env::var("P2PMARKET_REQUIRE_GPU").as_deref() == Ok("1") {
            panic!("GPU required (P2PMARKET_REQUIRE_GPU=1) but {why}");
        }
        eprintln!("\n*** SKIPPED: {why}; the settlement passes NOT tested ***\n");
        None
    }

    /// Lavapipe ends every loop of an invocation once they have run 65535 iterations in
    /// all. The kernel's probe must turn that into an error naming an hour, never return
    /// what the cut loops computed; a hardware GPU cuts nothing and must run every
    /// iteration, as the CPU does. The paper's chi attack (chi + 1 at hour 6, undefended) never converges, so the
    /// hour runs all of its 100 000 iterations, far past the limit.
    #[test]
    fn loops_the_driver_cuts_short_are_an_error() {
        let Some(ctx) = context_or_skip() else {
            return;
        };
        let market = crate::market::Market::from_scenario(&crate::scenario::Scenario::default())
            .expect("default market");
        let mut attacks = [AttackSlot::default(); MAX_ATTACKS];
        attacks[0] = AttackSlot {
            variable: AttackVariable::Chi.code(),
            agent: 1,
            hours: 1 << 6,
            first: 1,
            last: u32::MAX,
            shape: crate::attack::AttackShape::Constant.code(),
            ramp_iterations: 1,
            key: 0,
            size: 1.0,
        };
        let max_iterations = 100_000;
        let run = crate::engine::RunSpec {
            rci: crate::rci::RciSettings {
                max_iterations,
                ..Default::default()
            },
            attacks,
            ..Default::default()
        };
        let batch = Batch::from_market(&market, &[run]).expect("batch");
        let cpu = crate::engine::cpu::run_cpu(&batch).expect("cpu");
        let hour6 = &cpu.records[6];
        assert!(
            !hour6.converged && hour6.iterations == max_iterations,
            "{hour6:?}"
        );
        let mut precisions = vec![Precision::F32];
        if ctx.supports_f64() {
            precisions.push(Precision::F64);
        }
        for precision in precisions {
            match ctx.run(&batch, precision) {
                Err(e) if ctx.is_software() => {
                    let e = e.to_string();
                    // Lavapipe counts a group of invocations (hours 0-7 of the run)
                    // together: the hours that finished early compute their outputs after
                    // hour 6 has used up the count, and fault too. The first is reported.
                    assert!(
                        e.contains("run 0, hour ")
                            && e.contains("the Vulkan driver cut the kernel's loops short"),
                        "{precision:?}: {e}"
                    );
                }
                Ok(out) if !ctx.is_software() => {
                    let r = &out.records[6];
                    assert!(
                        !r.converged && r.iterations == max_iterations,
                        "{precision:?}: {r:?}"
                    );
                }
                other => panic!(
                    "{precision:?} on {:?} (software: {}): {other:?}",
                    ctx.info(),
                    ctx.is_software()
                ),
            }
        }
    }

    /// Two runs of the default day: the second with a price attack at hour 3 and per-hour
    /// inputs (the forecast's), for the kernel-variant tests.
    fn variant_batch() -> Batch {
        let market = crate::market::Market::from_scenario(&crate::scenario::Scenario::default())
            .expect("default market");
        // Lavapipe's loop limit allows about 500 iterations under an undefended attack.
        let rci = crate::rci::RciSettings {
            max_iterations: 300,
            ..Default::default()
        };
        let plain = crate::engine::RunSpec {
            rci: rci.clone(),
            ..Default::default()
        };
        let mut attacks = [AttackSlot::default(); MAX_ATTACKS];
        attacks[0] = AttackSlot {
            variable: AttackVariable::Price.code(),
            agent: 0,
            hours: 1 << 3,
            first: 1,
            last: 5,
            shape: crate::attack::AttackShape::Constant.code(),
            ramp_iterations: 1,
            key: 0,
            size: 2.0,
        };
        let other = crate::engine::RunSpec {
            rci,
            attacks,
            hourly: Some(Box::new(crate::engine::HourlyInputs::forecast(&market))),
            ..Default::default()
        };
        Batch::from_market(&market, &[plain, other]).expect("batch")
    }

    /// The host picks, per chunk, the smallest variant that accepts its runs.
    #[test]
    fn kernel_variants_are_chosen_per_chunk() {
        let mut batch = variant_batch();
        let none = KernelVariant {
            attacks: false,
            blend: false,
        };
        assert_eq!(KernelVariant::of(&batch, 0..1), none);
        // Per-hour inputs without a load table do not blend.
        let attacks = KernelVariant {
            attacks: true,
            blend: false,
        };
        assert_eq!(KernelVariant::of(&batch, 1..2), attacks);
        assert_eq!(KernelVariant::of(&batch, 0..2), attacks);
        batch.hourly[HOURS - 1].sg_weight = 0.25;
        assert_eq!(KernelVariant::of(&batch, 0..1), none);
        assert_eq!(KernelVariant::of(&batch, 1..2), KernelVariant::FULL);
    }

    /// Every variant computes the same records as the full kernel on the hours it accepts
    /// (bitwise, in each precision), and one that lacks what an hour needs stops it with
    /// an error naming the run, the hour and what is missing, instead of running it
    /// without.
    #[test]
    fn kernel_variants_agree_and_refuse_what_they_lack() {
        let Some(ctx) = context_or_skip() else {
            return;
        };
        let mut batch = variant_batch();
        let mut precisions = vec![Precision::F32];
        if ctx.supports_f64() {
            precisions.push(Precision::F64);
        }
        let no_attacks = KernelVariant {
            attacks: false,
            blend: true,
        };
        let no_blend = KernelVariant {
            attacks: true,
            blend: false,
        };
        for &precision in &precisions {
            let records = |variant: Option<KernelVariant>, batch: &Batch| {
                let mut out = Vec::new();
                run_variant(&ctx, precision, batch, variant, &mut |c| {
                    out.extend_from_slice(&c.records);
                    Ok(())
                })
                .map(|()| out)
            };
            // One run per chunk: the first chunk runs the smallest variant, the second the
            // attack variant.
            let chosen = records(None, &batch).expect("chosen variants");
            let full = records(Some(KernelVariant::FULL), &batch).expect("full kernel");
            assert_eq!(chosen.len(), 2 * HOURS);
            for (a, b) in chosen.iter().zip(&full) {
                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{precision:?}");
            }
            assert!(chosen[HOURS + 3].tampered > 0, "{:?}", chosen[HOURS + 3]);
            let e = records(Some(no_attacks), &batch)
                .expect_err("attacks")
                .to_string();
            assert!(
                e.contains("run 1, hour 3") && e.contains("compiled without attacks"),
                "{precision:?}: {e}"
            );
            assert!(records(Some(no_blend), &batch).is_ok(), "{precision:?}");
        }
        // A blending hour (the weight set by hand: its partner level's slots are read
        // only by a variant with the blend, and this one stops first).
        batch.hourly[5].sg_weight = 0.5;
        for &precision in &precisions {
            let e = run_variant(&ctx, precision, &batch, Some(no_blend), &mut |_| Ok(()))
                .expect_err("blend")
                .to_string();
            assert!(
                e.contains("run 1, hour 5") && e.contains("without the load-table blend"),
                "{precision:?}: {e}"
            );
        }
    }

    /// Runs `batch` one run per chunk in `precision`'s layout, with `variant` forced
    /// (`None`: the host's choice).
    fn run_variant(
        ctx: &GpuContext,
        precision: Precision,
        batch: &Batch,
        variant: Option<KernelVariant>,
        on_chunk: &mut dyn FnMut(&ChunkOutputs) -> Result<()>,
    ) -> Result<()> {
        match precision {
            Precision::F32 => ctx.run_layout::<Layout32>(
                batch,
                &ctx.kernel_f32,
                1,
                on_chunk,
                &|_, _| {},
                variant,
                Readback::Records,
            ),
            Precision::F64 => ctx.run_layout::<Layout64>(
                batch,
                ctx.kernel_f64.as_ref().expect("an f64 kernel"),
                1,
                on_chunk,
                &|_, _| {},
                variant,
                Readback::Records,
            ),
        }
    }

    /// 40 runs of the bench's perturbations (capped at 300 iterations for lavapipe's loop
    /// limit), three of them attacked (undefended, defended) and two with per-hour inputs.
    fn summary_batch() -> Batch {
        let market = crate::market::Market::from_scenario(&crate::scenario::Scenario::default())
            .expect("default market");
        let mut runs = crate::engine::bench::bench_runs(&market, 40);
        for r in &mut runs {
            r.rci.max_iterations = 300;
        }
        for (k, run) in [5, 17, 33].into_iter().enumerate() {
            runs[run].attacks[0] = AttackSlot {
                variable: AttackVariable::Power.code(),
                agent: 1,
                hours: 0b1011 << (4 * k),
                first: 1,
                last: 4,
                shape: crate::attack::AttackShape::Constant.code(),
                ramp_iterations: 1,
                key: 0,
                size: 0.5,
            };
        }
        runs[17].defence = Defence::Defended;
        for run in [8, 33] {
            runs[run].hourly = Some(Box::new(crate::engine::HourlyInputs::forecast(&market)));
        }
        Batch::from_market(&market, &runs).expect("batch")
    }

    /// Settlement heads hashed on the device are the host's chains over the records, bit
    /// for bit, whatever the chunking, with the summaries beside them, and nothing per hour
    /// crosses the bus. The batch has attacked and blended runs, negative and positive
    /// exchanges, and run numbers with high bits set.
    #[test]
    fn settlement_heads_are_hashed_on_the_device() {
        let Some(ctx) = f64_context_or_skip() else {
            return;
        };
        let batch = summary_batch();
        let ids: Vec<u64> = (0..batch.runs() as u64)
            .map(|r| if r % 3 == 0 { u64::MAX - r } else { 7 * r + 3 })
            .collect();
        for precision in [Precision::F64, Precision::F32] {
            heads_match_the_host(&ctx, &batch, &ids, precision);
        }
        let e = ctx
            .run_summaries_with_heads(&batch, Precision::F64, &ids[1..], 16, |_| Ok(()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("run_ids"), "{e}");
    }

    /// [`GpuContext::run_summaries_with_heads`] in `precision` against the host's
    /// reduction and chains of the records the same device reads back.
    fn heads_match_the_host(ctx: &GpuContext, batch: &Batch, ids: &[u64], precision: Precision) {
        let (runs, hours) = (batch.runs(), batch.hours());
        let full = ctx.run_chunked(batch, precision, 16).expect("records");
        let exchanges = full.records.iter().map(|h| h.exchange_mw);
        assert!(
            exchanges.clone().any(|x| x < 0.0) && exchanges.clone().any(|x| x > 0.0),
            "{precision:?}: both directions of trade"
        );
        let host: Vec<crate::ledger::Hash> = (0..runs)
            .map(|r| {
                crate::ledger::settlement_head(
                    ids[r],
                    full.records[r * hours..(r + 1) * hours]
                        .iter()
                        .map(|h| (h.price, h.exchange_mw)),
                )
            })
            .collect();
        for chunk in [16, 7] {
            let (mut heads, mut summaries, mut records) = (Vec::new(), Vec::new(), 0);
            let before = ctx.bytes_read_back();
            ctx.run_summaries_with_heads(batch, precision, ids, chunk, |c| {
                assert_eq!(c.heads.len(), c.runs.len());
                heads.extend_from_slice(&c.heads);
                summaries.extend_from_slice(&c.summaries);
                records += c.records.len();
                Ok(())
            })
            .expect("heads");
            assert_eq!(records, 0);
            // f64 summaries in either precision: f32 records are summed in f64.
            assert_eq!(
                ctx.bytes_read_back() - before,
                (runs * (size_of::<RunOut64>() + 4 * HEAD_WORDS)) as u64,
                "{precision:?}, chunks of {chunk}: one summary and one head per run"
            );
            for r in 0..runs {
                assert_eq!(
                    hex::encode(heads[r]),
                    hex::encode(host[r]),
                    "{precision:?}, run {r}, chunks of {chunk}"
                );
                let of = RunSummary::of(&full.records[r * hours..(r + 1) * hours]);
                assert_eq!(
                    format!("{:?}", summaries[r]),
                    format!("{of:?}"),
                    "{precision:?}, run {r}"
                );
            }
        }
        // Another run number gives another head: the starts are the runs' own.
        let mut shifted = Vec::new();
        let ids_plus: Vec<u64> = ids.iter().map(|i| i.wrapping_add(1)).collect();
        ctx.run_summaries_with_heads(batch, precision, &ids_plus, 16, |c| {
            shifted.extend_from_slice(&c.heads);
            Ok(())
        })
        .expect("heads");
        assert!(shifted.iter().zip(&host).all(|(a, b)| a != b));
    }

    /// The settlement passes on hand-made records: every sign and kind of exchange and
    /// price the encoding distinguishes (negative, -0.0, +0.0, tiny, huge, negative
    /// prices) hash as on the host, and a non-finite or subnormal value raises the run's
    /// flag instead of a head.
    #[test]
    fn settlement_passes_hash_every_kind_of_value_and_flag_the_rest() {
        let Some(ctx) = f64_context_or_skip() else {
            return;
        };
        let k64 = ctx
            .kernel_f64
            .as_ref()
            .expect("an f64 kernel beside SHADER_F64");
        assert!(
            ctx.kernel_f32.settle.is_some(),
            "the f32 kernel's settlement passes"
        );
        let finite_runs: Vec<[(f64, f64); 3]> = vec![
            [(31.25, -2.5), (20.0, 0.0), (19.5, -0.0)],
            [(-5.0, 7.0), (0.0, -3.0), (-0.0, 1e-300)],
            [(1e300, 1e-5), (1e-200, -4e200), (123.456, -0.1)],
            [(7.0, f64::MAX / 8.0), (2.0, -1.0), (42.0, 42.0)],
        ];
        let flagged_runs: Vec<[(f64, f64); 3]> = vec![
            [(f64::NAN, 1.0), (20.0, 1.0), (20.0, 1.0)],
            [(20.0, 1.0), (20.0, f64::INFINITY), (20.0, 1.0)],
            [(20.0, 1.0), (20.0, 1.0), (f64::MIN_POSITIVE / 4.0, 1.0)],
            // Finite factors whose product overflows, and one that underflows.
            [(20.0, 1.0), (1e300, -1e300), (20.0, 1.0)],
            [(1e-200, 1e-200), (20.0, 1.0), (20.0, 1.0)],
        ];
        let records: Vec<HourOut64> = finite_runs
            .iter()
            .chain(&flagged_runs)
            .flatten()
            .map(|&(price, exchange)| HourOut64 {
                price,
                exchange,
                ..HourOut64::zeroed()
            })
            .collect();
        let (words, _) = settle_by_hand(&ctx, k64, bytemuck::cast_slice(&records), 9, false);
        check_heads(&finite_runs, &flagged_runs, &words);

        // f32 records: widened exactly (a subnormal f32 is flagged: a device may flush
        // it), their products exact in f64, and `reduce_wide` summing them in f64.
        let finite32: Vec<[(f32, f32); 3]> = vec![
            [(31.25, -2.5), (20.0, 0.0), (19.5, -0.0)],
            [(-5.0, 7.0), (0.1, -3.3), (f32::MAX, f32::MAX)],
            [(1e-30, 1e-6), (123.456, -0.1), (f32::MIN_POSITIVE, 2.0)],
        ];
        let flagged32: Vec<[(f32, f32); 3]> = vec![
            [(f32::NAN, 1.0), (20.0, 1.0), (20.0, 1.0)],
            [(20.0, f32::NEG_INFINITY), (20.0, 1.0), (20.0, 1.0)],
            [(20.0, 1.0), (1e-40, 1.0), (20.0, 1.0)],
            [(20.0, 1.0), (20.0, 1.0), (20.0, -1e-42)],
        ];
        let records: Vec<HourOut32> = finite32
            .iter()
            .chain(&flagged32)
            .flatten()
            .enumerate()
            .map(|(i, &(price, exchange))| HourOut32 {
                price,
                exchange,
                cost: [price.abs() + 1.0, 1e-3 * i as f32],
                balance: -0.25 * i as f32,
                iterations: 3 + i as u32,
                converged: (i % 2) as u32,
                tampered: i as u32 / 4,
                ..HourOut32::zeroed()
            })
            .collect();
        let widen = |runs: &[[(f32, f32); 3]]| -> Vec<[(f64, f64); 3]> {
            runs.iter()
                .map(|r| r.map(|(p, x)| (f64::from(p), f64::from(x))))
                .collect()
        };
        let (words, wide) = settle_by_hand(
            &ctx,
            &ctx.kernel_f32,
            bytemuck::cast_slice(&records),
            7,
            true,
        );
        check_heads(&widen(&finite32), &widen(&flagged32), &words);
        let wide: Vec<RunOut64> = bytemuck::pod_collect_to_vec(&wide);
        for (r, w) in wide.iter().enumerate() {
            let hours: Vec<HourRecord> = records[3 * r..3 * r + 3]
                .iter()
                .map(Layout32::record)
                .collect();
            if r < finite32.len() {
                assert_eq!(w.fault, 0, "run {r}");
                assert_eq!(
                    format!("{:?}", Layout64::summary(w)),
                    format!("{:?}", RunSummary::of(&hours)),
                    "run {r}"
                );
            } else if r >= finite32.len() + 2 {
                // A subnormal price or exchange, a term of a sum, in hour 1 and then 2.
                let hour = (r - finite32.len() - 1) as u32;
                assert_eq!((w.fault, w.fault_hour), (SUBNORMAL_FAULT, hour), "run {r}");
            }
        }
    }

    /// Runs the settlement passes of `kernel` on hand-made records (`runs` runs of 3
    /// hours, numbered 1000 + r) and returns the heads' words and, with `wide`, the f64
    /// summaries' bytes.
    fn settle_by_hand(
        ctx: &GpuContext,
        kernel: &Kernel,
        records: &[u8],
        runs: usize,
        wide: bool,
    ) -> (Vec<u32>, Vec<u8>) {
        let ids: Vec<u64> = (0..runs as u64).map(|r| 1000 + r).collect();
        let dev = &ctx.device;
        let records_buf = storage_init(dev, "records", records);
        let wide_bytes = (runs * size_of::<RunOut64>()) as u64;
        let wide_buf = wide.then(|| storage_out(dev, "wide", wide_bytes));
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        let max_dim = dev.limits().max_compute_workgroups_per_dimension;
        let heads_buf = ctx
            .settle_chunk(
                &mut enc,
                kernel,
                &records_buf,
                wide_buf.as_ref(),
                &ids,
                0..runs,
                3,
                max_dim,
            )
            .expect("settle passes");
        let bytes = (runs * HEAD_WORDS * 4) as u64;
        let read = readback_buffer(dev, "heads", bytes + wide_bytes);
        enc.copy_buffer_to_buffer(&heads_buf, 0, &read, 0, bytes);
        if let Some(w) = &wide_buf {
            enc.copy_buffer_to_buffer(w, 0, &read, bytes, wide_bytes);
        }
        ctx.queue.submit([enc.finish()]);
        read.map_async(wgpu::MapMode::Read, .., |r| r.expect("mapped"));
        dev.poll(wgpu::PollType::wait_indefinitely()).expect("poll");
        let view = read.get_mapped_range(..).unwrap();
        let words = bytemuck::pod_collect_to_vec(&view[..bytes as usize]);
        (words, view[bytes as usize..].to_vec())
    }

    /// The heads of hand-made runs (numbered 1000 + r, the finite ones first) are the
    /// host's, and the others are flagged.
    fn check_heads(finite: &[[(f64, f64); 3]], flagged: &[[(f64, f64); 3]], words: &[u32]) {
        let all = finite.iter().chain(flagged);
        for (r, (run, got)) in all.zip(words.chunks_exact(HEAD_WORDS)).enumerate() {
            if r < finite.len() {
                assert_eq!(got[8], 0, "run {r} flagged");
                let host = crate::ledger::settlement_head(1000 + r as u64, run.iter().copied());
                let device: Vec<u8> = got[..8].iter().flat_map(|w| w.to_be_bytes()).collect();
                assert_eq!(hex::encode(device), hex::encode(host), "run {r}: {run:?}");
            } else {
                assert_eq!(got[8], 1, "run {r} not flagged: {run:?}");
            }
        }
    }

    /// Summaries reduced on the device are the reduction of the records (bitwise in f64,
    /// and equal to the CPU reference's; f32 sums within 1e-6), do not depend on the
    /// chunking, and are all that crosses the bus: the test counts the bytes read back.
    #[test]
    fn run_summaries_are_reduced_on_the_device_and_read_back_alone() {
        let Some(ctx) = context_or_skip() else {
            return;
        };
        let batch = summary_batch();
        let (runs, hours) = (batch.runs(), batch.hours());
        let cpu = crate::engine::cpu::run_cpu(&batch).expect("cpu");
        let mut precisions = vec![(
            Precision::F32,
            size_of::<HourOut32>(),
            size_of::<RunOut32>(),
        )];
        if ctx.supports_f64() {
            precisions.push((
                Precision::F64,
                size_of::<HourOut64>(),
                size_of::<RunOut64>(),
            ));
        }
        for (precision, hour_bytes, run_bytes) in precisions {
            let before = ctx.bytes_read_back();
            let full = ctx.run_chunked(&batch, precision, 16).expect("records");
            assert_eq!(
                ctx.bytes_read_back() - before,
                (runs * hours * hour_bytes) as u64,
                "{precision:?}: records mode reads every record back"
            );
            let summaries = |chunk: usize| {
                let mut out = Vec::new();
                let mut records = 0;
                let before = ctx.bytes_read_back();
                ctx.run_summaries(&batch, precision, chunk, |c| {
                    assert_eq!(c.summaries.len(), c.runs.len());
                    out.extend_from_slice(&c.summaries);
                    records += c.records.len();
                    Ok(())
                })
                .expect("summaries");
                assert_eq!(records, 0, "{precision:?}");
                // No per-hour byte: one summary per run and nothing else.
                assert_eq!(
                    ctx.bytes_read_back() - before,
                    (runs * run_bytes) as u64,
                    "{precision:?}, chunks of {chunk}"
                );
                out
            };
            let by_16 = summaries(16);
            let by_7 = summaries(7);
            assert_eq!(by_16.len(), runs);
            for r in 0..runs {
                let of =
                    |records: &[HourRecord]| RunSummary::of(&records[r * hours..(r + 1) * hours]);
                let (device, host) = (by_16[r], of(&full.records));
                assert_eq!(format!("{device:?}"), format!("{:?}", by_7[r]), "run {r}");
                match precision {
                    Precision::F64 => {
                        assert_eq!(format!("{device:?}"), format!("{host:?}"), "run {r}");
                        assert_eq!(format!("{device:?}"), format!("{:?}", of(&cpu.records)));
                    }
                    Precision::F32 => {
                        let counts = |s: &RunSummary| {
                            (
                                s.iterations,
                                s.iterations_max,
                                s.converged_hours,
                                s.tampered,
                                s.rejected,
                            )
                        };
                        assert_eq!(counts(&device), counts(&host), "run {r}");
                        // Extremes pick a record's value: exact.
                        let picks = |s: &RunSummary| [s.price_min, s.price_max, s.max_abs_balance];
                        assert_eq!(picks(&device), picks(&host), "run {r}");
                        // Sums of f32 values rounded in f32: within hours x eps x sum |term|.
                        let hrs = &full.records[r * hours..(r + 1) * hours];
                        let bound = |f: &dyn Fn(&HourRecord) -> f64| {
                            hours as f64
                                * f64::from(f32::EPSILON)
                                * hrs.iter().map(|h| f(h).abs()).sum::<f64>()
                        };
                        let sums = [
                            (device.price_sum, host.price_sum, bound(&|h| h.price)),
                            (
                                device.exchange_mwh,
                                host.exchange_mwh,
                                bound(&|h| h.exchange_mw),
                            ),
                            (
                                device.agent_cost[0],
                                host.agent_cost[0],
                                bound(&|h| h.agent_cost[0]),
                            ),
                            (
                                device.agent_cost[1],
                                host.agent_cost[1],
                                bound(&|h| h.agent_cost[1]),
                            ),
                        ];
                        for (d, h, b) in sums {
                            assert!((d - h).abs() <= b, "run {r}: {d} {h} {b}");
                        }
                    }
                }
            }
            assert!(
                by_16.iter().any(|s| s.tampered > 0 && s.rejected > 0),
                "{precision:?}"
            );
            assert!(
                by_16.iter().any(|s| s.tampered > 0 && s.rejected == 0),
                "{precision:?}"
            );
        }
        // A fault in any hour stops the batch, naming the run and the hour.
        let e = ctx
            .run_layout::<Layout32>(
                &batch,
                &ctx.kernel_f32,
                16,
                &mut |_| Ok(()),
                &|r, _| r[3].step_rule = 99,
                None,
                Readback::Summaries,
            )
            .expect_err("fault")
            .to_string();
        assert!(
            e.contains("run 3, hour 0") && e.contains("unknown step rule code 99"),
            "{e}"
        );
        // Trajectories are per-hour outputs: refused, naming the run.
        let mut specs = vec![crate::engine::RunSpec::default(); 3];
        specs[2].trajectory = true;
        let market = crate::market::Market::from_scenario(&crate::scenario::Scenario::default())
            .expect("default market");
        let with_trajectory = Batch::from_market(&market, &specs).expect("batch");
        let e = ctx
            .run_summaries(&with_trajectory, Precision::F32, 16, |_| Ok(()))
            .expect_err("trajectory")
            .to_string();
        assert!(e.contains("runs[2].trajectory"), "{e}");
    }

    /// The workgroup size is a speed setting: every allowed size gives the same records
    /// and summaries bitwise, in both precisions, and a size outside the list is refused
    /// with the field, the value and the allowed sizes.
    #[test]
    fn workgroup_sizes_give_the_same_results() {
        let Some(ctx) = context_or_skip() else {
            return;
        };
        let batch = summary_batch();
        let e = GpuContext::new(None)
            .and_then(|c| c.with_workgroup_size(48))
            .expect_err("48")
            .to_string();
        assert!(
            e.contains("workgroup_size") && e.contains("48") && e.contains("[32, 64, 128, 256]")
        );
        let mut precisions = vec![Precision::F32];
        if ctx.supports_f64() {
            precisions.push(Precision::F64);
        }
        let outputs = |ctx: &GpuContext, precision| {
            let records = ctx
                .run_chunked(&batch, precision, 16)
                .expect("records")
                .records;
            let mut summaries = Vec::new();
            ctx.run_summaries(&batch, precision, 16, |c| {
                summaries.extend_from_slice(&c.summaries);
                Ok(())
            })
            .expect("summaries");
            format!("{records:?} {summaries:?}")
        };
        let expected: Vec<String> = precisions.iter().map(|&p| outputs(&ctx, p)).collect();
        for size in WORKGROUP_SIZES.into_iter().filter(|&s| s != WORKGROUP_SIZE) {
            let other = GpuContext::new(None)
                .and_then(|c| c.with_workgroup_size(size))
                .expect("an allowed size");
            assert_eq!(other.workgroup_size(), size);
            for (&p, want) in precisions.iter().zip(&expected) {
                assert!(outputs(&other, p) == *want, "{p:?}, workgroups of {size}");
            }
        }
    }

    #[test]
    fn the_kernel_reports_an_unknown_code() {
        let Some(ctx) = context_or_skip() else {
            return;
        };
        let market = crate::market::Market::from_scenario(&crate::scenario::Scenario::default())
            .expect("default market");
        let run = crate::engine::RunSpec {
            rci: crate::rci::RciSettings {
                max_iterations: 20,
                ..Default::default()
            },
            ..Default::default()
        };
        let batch = Batch::from_market(&market, &[run]).expect("batch");
        check_faults!(ctx, &batch, Layout32, &ctx.kernel_f32);
        if let Some(k) = &ctx.kernel_f64 {
            check_faults!(ctx, &batch, Layout64, k);
        }
    }

    #[test]
    fn host_structs_match_the_wgsl_layout_f32() {
        check_all!(
            Precision::F32,
            RunParams32,
            AttackSlot32,
            AgentSlot32,
            HourIn32,
            HourOut32,
            RunOut32
        );
    }

    /// The settlement module's structs: its parameters, and the f64 summaries
    /// `reduce_wide` writes, which the host reads as `RunOut64`.
    #[test]
    fn host_structs_match_the_settlement_module_layout() {
        let m = naga::front::wgsl::parse_str(&settle_source()).expect("settle.wgsl");
        check_layout!(
            &m,
            "SettleParams",
            SettleParams,
            [items, hours, groups_x, loop_probe]
        );
        check_run_out_layout!(&m, "RunWide", RunOut64);
    }

    #[test]
    fn host_structs_match_the_wgsl_layout_f64() {
        check_all!(
            Precision::F64,
            RunParams64,
            AttackSlot64,
            AgentSlot64,
            HourIn64,
            HourOut64,
            RunOut64
        );
    }
}
