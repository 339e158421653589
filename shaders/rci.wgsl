// The RCI negotiation of one market hour of one run per invocation: the WGSL twin of
// `rci::negotiate_attacked`, the loop of `rci::step` (src/rci.rs), evaluated over the flat
// batch of src/engine/batch.rs, with the false-data injections of src/attack.rs.
//
// One source serves both precisions: the host prepends
//   alias real = f32;   or   alias real = f64;
// plus the constants DIVERGENCE_LIMIT, MAX_AGENTS, MAX_UNITS, MAX_POINTS, MAX_ATTACKS and
// DAY_HOURS, the pipeline-overridable WORKGROUP_SIZE (its default; a context may choose
// another, `GpuContext::with_workgroup_size`), and the codes of the step rule (STEP_*), the power update
// (UPDATE_*), the dual update (DUAL_*), the start price (START_*), the attacked variable
// (ATTACK_*), the attack shape (SHAPE_*), the defence (DEFENCE_*), the kernel's faults
// (FAULT_*), the agent flags (SCALE_*), the markers NO_TRAJECTORY and NO_HOURLY and the
// pool's UNIT_STRIDE, all generated from the Rust definitions (see
// `engine::gpu::shader_source`). Every test of a code ends in a failing default (`fail`):
// an unknown code stops the invocation and the host reports it, never runs as another
// code. The f64 variant may only use + - * / fma sqrt min max abs clamp select: Mesa's
// lavapipe returns garbage for f64 transcendentals (wgpu issue 6087), and a unit test
// scans the generated source for them.
//
// Loops: lavapipe counts the iterations of every loop of a group of invocations together
// and ends them all at 65535, silently; `loops_cut` turns that into an error. Hence the
// binary searches, and the fused searches of `signals_of`. (Unrolling the agents' loops
// to fixed trip counts would lift the limit to about 5000 RCI iterations, but tripled
// lavapipe's compile time, to about 20 s.)
//
// Invocation ordering: invocation `item` of the 2-D dispatch handles run `item / hours`
// and hour `item % hours` of the chunk, so the hours of a run sit side by side in a
// workgroup. There is no data-dependent recursion: each invocation runs one loop of at most
// `max_iterations` iterations and leaves it when its stop rules hold; the order of every
// floating-point operation follows the CPU reference.
//
// Attacks: an hour with an undefended active slot runs `rci::step_views` (each agent on its
// own view of the messages, with its own Newton memory); every other hour runs the
// attack-free `rci::step_free`, which a defended hour runs plus the count of the altered
// (rejected) messages (`rci::step_shared`).
//
// Infinities do not exist in WGSL, so the Newton price bracket [lo, hi] of the reference
// (initially [-inf, inf]), the step memory (initially inf) and a missing Newton gap (inf)
// are carried as values plus "set" flags.

// Pipeline-overridable: the host compiles, on first use, a variant without the attack
// machinery (ATTACKS false) or without the load-table blend (BLEND false) for the chunks
// that use neither (`engine::gpu::KernelVariant`). A variant computes the same function on
// every hour it accepts, and an hour that would need what it lacks stops with
// FAULT_KERNEL_VARIANT (1: attacks, 2: the blend), never runs without it. The reason is
// lavapipe: it runs both sides of every `if` under a mask, so code that no hour of a
// chunk takes still costs there (the bench's attack-free day ran 1.6x faster in f32 and
// 1.9x in f64 without it); on hardware GPUs a smaller kernel also needs fewer registers.
override ATTACKS: bool = true;
override BLEND: bool = true;

struct Params {
    // (run, hour) pairs in this chunk.
    items: u32,
    hours: u32,
    agents: u32,
    // Workgroups along x of the 2-D dispatch.
    groups_x: u32,
    // Always 2: the trip count of `loops_cut`'s loop, unknown to the compiler.
    loop_probe: u32,
}

// Mirror of `engine::gpu::RunParams*`: one run's settings and perturbation.
struct RunParams {
    chi: real,
    kappa: real,
    kappa_decay: real,
    newton_damping: real,
    slope_floor: real,
    xi: real,
    relax_gamma: real,
    price_tol: real,
    power_tol: real,
    dual_tol: real,
    balance_tol: real,
    initial_price: real,
    renewable_scale: real,
    mg_load_scale: real,
    max_iterations: u32,
    // STEP_CONSTANT, STEP_DIMINISHING or STEP_NEWTON.
    step_rule: u32,
    // UPDATE_PLAIN or UPDATE_RELAXED.
    power_update: u32,
    curve_set: u32,
    // Offset of the run's trajectory in `trajectory` (reals), or 0xffffffff for none.
    trajectory_offset: u32,
    // DUAL_EXACT or DUAL_GRADIENT.
    dual_update: u32,
    // Index of the run's first HourIn in `hourly`, or NO_HOURLY.
    hourly_offset: u32,
    // START_COMMON or START_OWN_MARGINAL.
    start_price: u32,
    // DEFENCE_UNDEFENDED or DEFENCE_DEFENDED.
    defence: u32,
    _pad: u32,
}

// Mirror of `engine::gpu::HourIn*` (`engine::HourInput`): one hour of a run with per-hour
// inputs (issue 7).
struct HourIn {
    // Base pmax of the units of SCALE_RENEWABLES agents, MW, in unit order.
    unit_pmax: array<real, MAX_UNITS>,
    // Base load of SCALE_LOAD agents, MW.
    load_mw: real,
    // Weight of the next level (the slots at slot_base + agents) in the pool curves'
    // prices, exports and costs.
    sg_weight: real,
    // Index in `slots` of this hour's first agent slot.
    slot_base: u32,
    _pad: u32,
}

// Mirror of `engine::gpu::AttackSlot*` (`attack::AttackSlot`): MAX_ATTACKS per run.
struct AttackSlot {
    // ATTACK_* code; ATTACK_NONE: an empty slot.
    variable: u32,
    agent: u32,
    // Attacked hours, bit h for hour h.
    hours: u32,
    // Attacked message iterations first..=last.
    first: u32,
    last: u32,
    // SHAPE_* code.
    shape: u32,
    ramp_iterations: u32,
    // Key of the seeded draws.
    key: u32,
    size: real,
}

// Mirror of `engine::gpu::AgentSlot*`: an agent of an hour of a curve set.
struct AgentSlot {
    fixed_export_mw: real,
    load_mw: real,
    fixed_cost: real,
    min_export: real,
    max_export: real,
    curve_offset: u32,
    curve_len: u32,
    unit_offset: u32,
    unit_count: u32,
    flags: u32,
    _pad: u32,
}

// Mirror of `engine::gpu::HourOut*`: the outcome of one (run, hour).
struct HourOut {
    price: real,
    exchange: real,
    price_change: real,
    power_change: real,
    dual_change: real,
    balance: real,
    price_spread: real,
    power: array<real, MAX_AGENTS>,
    cost: array<real, MAX_AGENTS>,
    iterations: u32,
    converged: u32,
    // Messages an attack altered, and those the ledger rejected.
    tampered: u32,
    rejected: u32,
    // FAULT_* of an unknown code met or of loops cut short (0: none), and the code (the
    // probe's trips for FAULT_LOOP_LIMIT).
    fault: u32,
    fault_code: u32,
}

// Mirror of `engine::gpu::RunOut*` (`engine::RunSummary`): one run's hours reduced in
// hour order by `reduce_runs`, and the first faulting hour's fault.
struct RunOut {
    price_sum: real,
    price_min: real,
    price_max: real,
    exchange_sum: real,
    cost_sum: array<real, MAX_AGENTS>,
    max_abs_balance: real,
    iterations: u32,
    iterations_max: u32,
    converged_hours: u32,
    tampered: u32,
    rejected: u32,
    fault: u32,
    fault_code: u32,
    fault_hour: u32,
}

// NO_TRAJECTORY, NO_HOURLY, SCALE_RENEWABLES, SCALE_LOAD and UNIT_STRIDE come from the
// host with the other codes (`engine::gpu::codes`).

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> runs: array<RunParams>;
@group(0) @binding(2) var<storage, read> attacks: array<AttackSlot>;
@group(0) @binding(3) var<storage, read> slots: array<AgentSlot>;
@group(0) @binding(4) var<storage, read> pool: array<real>;
@group(0) @binding(5) var<storage, read_write> outputs: array<HourOut>;
@group(0) @binding(6) var<storage, read_write> trajectory: array<real>;
@group(0) @binding(7) var<storage, read> hourly: array<HourIn>;
@group(0) @binding(8) var<storage, read_write> run_outputs: array<RunOut>;

// Per agent: where its curve lives. A pool curve is read from `pool`; a unit agent's
// curve is built once into these private arrays, exactly as `OfferCurve::from_units`.
var<private> from_pool: array<bool, MAX_AGENTS>;
var<private> curve_offset: array<u32, MAX_AGENTS>;
var<private> curve_len: array<u32, MAX_AGENTS>;
// A pool curve blended with the next load-table level's (`Batch::blend_partner`): prices,
// exports and costs a + w * (b - a) breakpoint by breakpoint (both have as many).
var<private> blended: array<bool, MAX_AGENTS>;
var<private> blend_offset: array<u32, MAX_AGENTS>;
var<private> blend_w: array<real, MAX_AGENTS>;
// Each curve's first and last breakpoint (price and export), read once per hour: the
// curve's ends are tested in every look-up.
var<private> first_price: array<real, MAX_AGENTS>;
var<private> last_price: array<real, MAX_AGENTS>;
var<private> first_export: array<real, MAX_AGENTS>;
var<private> last_export: array<real, MAX_AGENTS>;
// This (run, hour)'s per-hour inputs, valid when has_hourly.
var<private> has_hourly: bool;
var<private> hour_in: HourIn;
var<private> local_prices: array<array<real, MAX_POINTS>, MAX_AGENTS>;
var<private> local_exports: array<array<real, MAX_POINTS>, MAX_AGENTS>;
var<private> local_costs: array<array<real, MAX_POINTS>, MAX_AGENTS>;

fn cp(a: u32, k: u32) -> real {
    if from_pool[a] {
        let p = pool[curve_offset[a] + k];
        if BLEND && blended[a] {
            return p + blend_w[a] * (pool[blend_offset[a] + k] - p);
        }
        return p;
    }
    return local_prices[a][k];
}

fn ce(a: u32, k: u32) -> real {
    if from_pool[a] {
        let e = pool[curve_offset[a] + curve_len[a] + k];
        if BLEND && blended[a] {
            return e + blend_w[a] * (pool[blend_offset[a] + curve_len[a] + k] - e);
        }
        return e;
    }
    return local_exports[a][k];
}

fn cc(a: u32, k: u32) -> real {
    if from_pool[a] {
        let c = pool[curve_offset[a] + 2u * curve_len[a] + k];
        if BLEND && blended[a] {
            return c + blend_w[a] * (pool[blend_offset[a] + 2u * curve_len[a] + k] - c);
        }
        return c;
    }
    return local_costs[a][k];
}

// Builds agent `a`'s curve from its scaled units (`OfferCurve::from_units`): breakpoints
// where a unit reaches pmin or pmax, sorted and deduplicated, exports and costs summed in
// unit order.
// A unit's base pmax: the run's per-hour value, or the pool's.
fn unit_pmax(o: u32, u: u32, hourly_pmax: bool) -> real {
    if hourly_pmax {
        return hour_in.unit_pmax[u];
    }
    return pool[o + 4u];
}

fn build_unit_curve(a: u32, s: AgentSlot, rp: RunParams) {
    var renewable = real(1.0);
    let renewables = (s.flags & SCALE_RENEWABLES) != 0u;
    if renewables {
        renewable = rp.renewable_scale;
    }
    let hourly_pmax = has_hourly && renewables;
    var load = s.load_mw;
    if (s.flags & SCALE_LOAD) != 0u {
        var base_load = s.load_mw;
        if has_hourly {
            base_load = hour_in.load_mw;
        }
        load = base_load * rp.mg_load_scale;
    }
    let fixed_export = s.fixed_export_mw - load;
    if s.unit_count == 0u {
        // OfferCurve::fixed
        local_prices[a][0] = real(0.0);
        local_exports[a][0] = fixed_export;
        local_costs[a][0] = s.fixed_cost;
        curve_len[a] = 1u;
        return;
    }
    var n = 0u;
    for (var u = 0u; u < s.unit_count; u++) {
        let o = s.unit_offset + u * UNIT_STRIDE;
        let c2 = pool[o];
        let c1 = pool[o + 1u];
        let pmax = unit_pmax(o, u, hourly_pmax) * renewable;
        local_prices[a][n] = c1 + 2.0 * c2 * pool[o + 3u];
        local_prices[a][n + 1u] = c1 + 2.0 * c2 * pmax;
        n += 2u;
    }
    // Insertion sort, then drop exact duplicates (Vec::sort_by + dedup).
    for (var i = 1u; i < n; i++) {
        let v = local_prices[a][i];
        var j = i;
        while j > 0u && local_prices[a][j - 1u] > v {
            local_prices[a][j] = local_prices[a][j - 1u];
            j -= 1u;
        }
        local_prices[a][j] = v;
    }
    var m = 1u;
    for (var i = 1u; i < n; i++) {
        if local_prices[a][i] != local_prices[a][m - 1u] {
            local_prices[a][m] = local_prices[a][i];
            m += 1u;
        }
    }
    for (var k = 0u; k < m; k++) {
        let price = local_prices[a][k];
        var x = fixed_export;
        var c = s.fixed_cost;
        for (var u = 0u; u < s.unit_count; u++) {
            let o = s.unit_offset + u * UNIT_STRIDE;
            let c2 = pool[o];
            let c1 = pool[o + 1u];
            let c0 = pool[o + 2u];
            let pmax = unit_pmax(o, u, hourly_pmax) * renewable;
            // QuadraticUnit::output_at and ::cost.
            let p = clamp((price - c1) / (2.0 * c2), pool[o + 3u], pmax);
            x += p;
            c += (c2 * p + c1) * p + c0;
        }
        local_exports[a][k] = x;
        local_costs[a][k] = c;
    }
    curve_len[a] = m;
}

// `rci::within_divergence_limit`: a comparison of finite values only, since WGSL lets a
// driver assume NaN and infinity never occur and fold a test for them away.
fn within_divergence_limit(x: real) -> bool {
    return abs(x) <= DIVERGENCE_LIMIT;
}

// ---- Binary searches over a curve's ascending breakpoints ----
//
// Each replaces a scan that kept the last index whose breakpoint passed a test: prices
// ascend strictly and exports never descend, so the test holds on a prefix and a binary
// search finds the same index with the same comparisons, in about log2(n) iterations
// instead of n. Lavapipe ends every loop of an invocation after 65535 iterations in all
// (see `loops_cut`): with scans, an hour of about 160 RCI iterations on the default day
// ran out; with searches, the attack-free variant runs 1100 Newton iterations and cuts 1200
// (the full kernel ran 900 and cut 1000), the attack variant 500 of an hour under an
// undefended attack, whose views need more loops, and cuts 600.

// The test of a breakpoint value x against v. NOT_ABOVE and NOT_AT_LEAST hold for a NaN
// v, as the scans' `else` branches did.
const BELOW: u32 = 0u;
const AT_MOST: u32 = 1u;
const NOT_ABOVE: u32 = 2u;
const NOT_AT_LEAST: u32 = 3u;

fn passes(x: real, test: u32, v: real) -> bool {
    switch test {
        case BELOW: {
            return x < v;
        }
        case AT_MOST: {
            return x <= v;
        }
        case NOT_ABOVE: {
            return !(x > v);
        }
        default: {
            return !(x >= v);
        }
    }
}

// The last index j in 1..limit whose breakpoint (its price if `prices`, else its export)
// passes `test` against v, 0 if none: Rust's `partition_point` minus one, found by
// binary lifting (steps from the highest power of two below `limit` down to 1).
fn last_passing(a: u32, prices: bool, test: u32, v: real, limit: u32) -> u32 {
    if limit < 2u {
        return 0u;
    }
    var k = 0u;
    var step = 1u << firstLeadingBit(limit - 1u);
    loop {
        let j = k + step;
        if j < limit {
            var x: real;
            if prices {
                x = cp(a, j);
            } else {
                x = ce(a, j);
            }
            if passes(x, test, v) {
                k = j;
            }
        }
        if step == 1u {
            break;
        }
        step = step >> 1u;
    }
    return k;
}

// OfferCurve::export_at.
fn export_at(a: u32, price: real) -> real {
    let n = curve_len[a];
    if price <= first_price[a] {
        return first_export[a];
    }
    if price >= last_price[a] {
        return last_export[a];
    }
    // Last breakpoint with prices[k] <= price (partition_point - 1).
    let k = last_passing(a, true, AT_MOST, price, n - 1u);
    let dp = cp(a, k + 1u) - cp(a, k);
    let t = (price - cp(a, k)) / dp;
    return ce(a, k) + t * (ce(a, k + 1u) - ce(a, k));
}

// OfferCurve::slope_at.
fn slope_at(a: u32, price: real, downward: bool) -> real {
    let n = curve_len[a];
    if n < 2u {
        return real(0.0);
    }
    var k = 0u;
    if downward {
        // Written so that NaN falls outside every segment, as in the reference.
        if !(price > first_price[a] && price <= last_price[a]) {
            return real(0.0);
        }
        // Last breakpoint strictly below `price`.
        k = last_passing(a, true, BELOW, price, n);
    } else {
        if !(price >= first_price[a] && price < last_price[a]) {
            return real(0.0);
        }
        k = last_passing(a, true, AT_MOST, price, n - 1u);
    }
    return segment_slope(a, k);
}

// The slope (MW per $/MWh) of the curve's segment from breakpoint k to k + 1; 0 for a
// segment of no price width.
fn segment_slope(a: u32, k: u32) -> real {
    let dp = cp(a, k + 1u) - cp(a, k);
    if dp > 0.0 {
        return (ce(a, k + 1u) - ce(a, k)) / dp;
    }
    return real(0.0);
}

// OfferCurve::next_breakpoint as a distance from `price` (-1: none in that direction).
fn next_break_distance(a: u32, price: real, downward: bool) -> real {
    if downward {
        return gap_below(a, price, last_passing(a, true, BELOW, price, curve_len[a]));
    }
    return gap_above(a, price, last_passing(a, true, NOT_ABOVE, price, curve_len[a]));
}

// The distance from `price` down to the last breakpoint below it (ascending prices: the
// nearest), given `below`, the last index >= 1 with a price below `price`; -1: none.
fn gap_below(a: u32, price: real, below: u32) -> real {
    if below >= 1u {
        return price - cp(a, below);
    }
    if first_price[a] < price {
        return price - first_price[a];
    }
    return real(-1.0);
}

// The distance from `price` up to the first breakpoint above it, given `not_above`, the
// last index >= 1 whose price is not above `price`; -1: none.
fn gap_above(a: u32, price: real, not_above: u32) -> real {
    if first_price[a] > price {
        return first_price[a] - price;
    }
    let first = not_above + 1u;
    if first < curve_len[a] {
        return cp(a, first) - price;
    }
    return real(-1.0);
}

// OfferCurve::cost_at_export (with price_at_export inlined).
fn cost_at_export(a: u32, x: real) -> real {
    let n = curve_len[a];
    if x <= first_export[a] {
        return cc(a, 0u) + (x - first_export[a]) * first_price[a];
    }
    if x >= last_export[a] {
        return cc(a, n - 1u) + (x - last_export[a]) * last_price[a];
    }
    let k = last_passing(a, false, AT_MOST, x, n - 1u);
    let dx = ce(a, k + 1u) - ce(a, k);
    let t = (x - ce(a, k)) / dx;
    let p = cp(a, k) + t * (cp(a, k + 1u) - cp(a, k));
    // Trapezoid rule: exact for the linear marginal cost of a segment.
    return cc(a, k) + (x - ce(a, k)) * 0.5 * (cp(a, k) + p);
}

// rci::newton_kappa, with the bracket's "finite" tests and the gap's presence as flags.
fn newton_kappa(
    mismatch: real,
    mean_price: real,
    slope: real,
    has_flat: bool,
    flat_distance: real,
    lo: real,
    hi: real,
    lo_set: bool,
    hi_set: bool,
    step_before_last: real,
    have_step_before_last: bool,
    rp: RunParams,
) -> real {
    let newton = rp.newton_damping / max(slope, rp.slope_floor);
    if mismatch == 0.0 {
        return newton;
    }
    let balanced = abs(mismatch) <= rp.balance_tol;
    // On a flat stretch: step to the nearest breakpoint (has_flat: there is one; an
    // attacked gap may be negative).
    var kappa = newton;
    if has_flat && slope < rp.slope_floor && !balanced {
        kappa = flat_distance / abs(mismatch);
    }
    let target_price = mean_price - kappa * mismatch;
    if balanced {
        // A balanced iterate stays: its step is clamped into the bracket.
        var inside = target_price;
        if lo_set {
            inside = max(inside, lo);
        }
        if hi_set {
            inside = min(inside, hi);
        }
        if (!(lo_set && hi_set) || lo <= hi) && inside != target_price {
            return (mean_price - inside) / mismatch;
        }
        return kappa;
    }
    // Otherwise a target not strictly inside the bracket, or a step longer than half the
    // step before the last, goes to its middle.
    // The step's length is |kappa * mismatch|, as rci::newton_kappa and the step memory
    // write it: |target_price - mean_price| is the same number in exact arithmetic, but a
    // compiler may rewrite (mean - x) - mean as -x (lavapipe does), and the two differ in
    // the last bit, which decides exact ties (after a bisection, the flat step back to the
    // bracket's end is exactly half the step before it).
    let long_step = have_step_before_last && abs(kappa * mismatch) > 0.5 * step_before_last;
    if lo_set && hi_set && (!(target_price > lo && target_price < hi) || long_step) {
        let mid = 0.5 * (lo + hi);
        let k = (mean_price - mid) / mismatch;
        if k > 0.0 {
            return k;
        }
    }
    return kappa;
}

// The price at which an agent's own curve meets one of its trade limits
// (OfferCurve::highest_price_within / lowest_price_reaching); `unbounded`: never, the
// reference's infinity.
struct LimitPrice {
    price: real,
    unbounded: bool,
}

// OfferCurve::price_at_export (the marginal price at export x).
fn price_at_export(a: u32, x: real) -> real {
    let n = curve_len[a];
    if x <= first_export[a] {
        return first_price[a];
    }
    if x >= last_export[a] {
        return last_price[a];
    }
    // Last breakpoint with export <= x (partition_point - 1); the next one exports more.
    let k = last_passing(a, false, AT_MOST, x, n);
    let t = (x - ce(a, k)) / (ce(a, k + 1u) - ce(a, k));
    return cp(a, k) + t * (cp(a, k + 1u) - cp(a, k));
}

// OfferCurve::highest_price_within.
fn highest_price_within(a: u32, x: real) -> LimitPrice {
    let n = curve_len[a];
    if last_export[a] <= x {
        return LimitPrice(real(0.0), true);
    }
    if first_export[a] > x {
        return LimitPrice(first_price[a], false);
    }
    // Last breakpoint with export <= x (partition_point - 1).
    let k = last_passing(a, false, AT_MOST, x, n);
    let t = (x - ce(a, k)) / (ce(a, k + 1u) - ce(a, k));
    return LimitPrice(cp(a, k) + t * (cp(a, k + 1u) - cp(a, k)), false);
}

// OfferCurve::lowest_price_reaching.
fn lowest_price_reaching(a: u32, x: real) -> LimitPrice {
    let n = curve_len[a];
    if first_export[a] >= x {
        return LimitPrice(real(0.0), true);
    }
    if last_export[a] < x {
        return LimitPrice(last_price[a], false);
    }
    // First breakpoint with export >= x (partition_point), the last if none.
    let k = min(last_passing(a, false, NOT_AT_LEAST, x, n) + 1u, n - 1u);
    let t = (x - ce(a, k - 1u)) / (ce(a, k) - ce(a, k - 1u));
    return LimitPrice(cp(a, k - 1u) + t * (cp(a, k) - cp(a, k - 1u)), false);
}

fn record(offset: u32, hour_base: u32, k: u32, n: u32, i: u32, st: AgentState) {
    let o = offset + ((hour_base + k) * n + i) * 4u;
    trajectory[o] = st.price;
    trajectory[o + 1u] = st.power;
    trajectory[o + 2u] = st.du;
    trajectory[o + 3u] = st.dl;
}

// The first unknown code met (FAULT_* and the code), or loops cut short by the driver
// (FAULT_LOOP_LIMIT); the invocation stops and the host turns it into an error.
var<private> fault: u32;
var<private> fault_code: u32;

fn fail(what: u32, code: u32) {
    if fault == 0u {
        fault = what;
        fault_code = code;
    }
}

// Fails with FAULT_LOOP_LIMIT if the driver has cut this invocation's loops short.
// Lavapipe (llvmpipe) counts the iterations of all the loops of a group of invocations
// together and, once they reach 65535 (LP_MAX_TGSI_LOOP_ITERATIONS), ends every loop
// after its first iteration, silently; the outer RCI loop then ends too. A loop of
// `params.loop_probe` (2) iterations, which the compiler cannot unroll, then runs once.
// `main` calls this after everything else, just before it writes the hour's outputs, so
// a cut anywhere (setup, negotiation, costs) is reported instead of returned. Other
// drivers never cut a loop, and this costs two iterations.
fn loops_cut() {
    var trips = 0u;
    for (var i = 0u; i < params.loop_probe; i++) {
        trips += 1u;
    }
    if trips != params.loop_probe {
        fail(FAULT_LOOP_LIMIT, trips);
    }
}

// ---- Attacks (src/attack.rs) ----

// The run's slots and the hour's bit in their `hours` masks (0 past the day).
var<private> run_slots: array<AttackSlot, MAX_ATTACKS>;
var<private> hour_bit: u32;
var<private> attack_hour: u32;

// attack::hash32 (Wellons' lowbias32; u32 multiplication wraps in WGSL).
fn hash32(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// attack::unit_draw: 24 random bits, exact in f32 and f64.
fn unit_draw(key: u32, hour: u32, m: u32) -> real {
    let h = hash32(hash32(key ^ hash32(hour)) ^ m);
    return real(h >> 8u) / real(16777216.0);
}

// AttackSlot::offset: the injected c of iteration m.
fn offset(s: AttackSlot, m: u32) -> real {
    var c = real(0.0);
    switch s.shape {
        case SHAPE_CONSTANT: {
            c = s.size;
        }
        case SHAPE_RAMP: {
            let step = real(m - s.first) + 1.0;
            c = s.size * min(step / real(s.ramp_iterations), real(1.0));
        }
        case SHAPE_UNIFORM: {
            c = s.size * (2.0 * unit_draw(s.key, attack_hour, m) - 1.0);
        }
        case SHAPE_SIGN: {
            c = select(s.size, -s.size, unit_draw(s.key, attack_hour, m) < 0.5);
        }
        default: {
            fail(FAULT_ATTACK_SHAPE, s.shape);
        }
    }
    return c;
}

// The slots' activity (AttackSlot::hits but for the variable and agent) and injected c
// in message iteration m, prepared once per iteration (`prepare`) at index m % 2: an
// iteration reads the messages of m - 1 and m. Precomputed rather than evaluated in every
// `seen`: the views call it many times per iteration.
var<private> slot_on: array<array<bool, MAX_ATTACKS>, 2>;
var<private> slot_c: array<array<real, MAX_ATTACKS>, 2>;

fn prepare(m: u32) {
    let p = m & 1u;
    for (var k = 0u; k < MAX_ATTACKS; k++) {
        let s = run_slots[k];
        let on = s.variable != ATTACK_NONE && (s.hours & hour_bit) != 0u && m >= s.first
            && m <= s.last;
        slot_on[p][k] = on;
        slot_c[p][k] = real(0.0);
        if on {
            slot_c[p][k] = offset(s, m);
        }
    }
}

// Whether slot k alters `variable` of `agent`'s message m (prepared).
fn slot_hits(k: u32, variable: u32, agent: u32, m: u32) -> bool {
    return slot_on[m & 1u][k] & (run_slots[k].variable == variable) & (run_slots[k].agent == agent);
}

// HourAttacks::seen: `value` of `agent`'s message m as the receivers see it (every
// active slot's c added in slot order).
fn seen(variable: u32, agent: u32, m: u32, value: real) -> real {
    var v = value;
    for (var k = 0u; k < MAX_ATTACKS; k++) {
        v = select(v, v + slot_c[m & 1u][k], slot_hits(k, variable, agent, m));
    }
    return v;
}

// HourAttacks::seen_price: the price of `sender`'s message m as `receiver` sees it (price
// slots on the sender; stealthy wedges +c from their target, -c to it), in slot order.
fn seen_price(sender: u32, receiver: u32, m: u32, value: real) -> real {
    var v = value;
    for (var k = 0u; k < MAX_ATTACKS; k++) {
        let c = slot_c[m & 1u][k];
        if slot_hits(k, ATTACK_PRICE, sender, m) {
            v = v + c;
        } else if sender != receiver {
            if slot_hits(k, ATTACK_STEALTHY_PRICE, sender, m) {
                v = v + c;
            } else if slot_hits(k, ATTACK_STEALTHY_PRICE, receiver, m) {
                v = v - c;
            }
        }
    }
    return v;
}

// HourAttacks::wedges: a stealthy wedge is active in message m.
fn wedges(m: u32) -> bool {
    var hit = false;
    for (var k = 0u; k < MAX_ATTACKS; k++) {
        hit = hit | (slot_on[m & 1u][k] & (run_slots[k].variable == ATTACK_STEALTHY_PRICE));
    }
    return hit;
}

// HourAttacks::targets.
fn targets(variable: u32, agent: u32, m: u32) -> bool {
    var hit = false;
    for (var k = 0u; k < MAX_ATTACKS; k++) {
        hit = hit | slot_hits(k, variable, agent, m);
    }
    return hit;
}

// Whether an attack alters `x` in a bit (the kernel's precision) as sent.
fn field_altered(variable: u32, agent: u32, m: u32, x: real) -> bool {
    return targets(variable, agent, m) && seen(variable, agent, m, x) != x;
}

// Checks a slot's codes (AttackSlot's are validated with the batch; the kernel still
// never runs an unknown one as another).
fn check_slot(s: AttackSlot) {
    switch s.variable {
        case ATTACK_NONE: {}
        case ATTACK_CHI, ATTACK_PRICE, ATTACK_POWER, ATTACK_DUAL_UPPER, ATTACK_DUAL_LOWER,
            ATTACK_SLOPE, ATTACK_GAP, ATTACK_STEALTHY_PRICE: {
            switch s.shape {
                case SHAPE_CONSTANT, SHAPE_RAMP, SHAPE_UNIFORM, SHAPE_SIGN: {}
                default: {
                    fail(FAULT_ATTACK_SHAPE, s.shape);
                }
            }
        }
        default: {
            fail(FAULT_ATTACK_VARIABLE, s.variable);
        }
    }
}

// ---- One agent (rci::AgentState and its helpers) ----

struct AgentState {
    price: real,
    power: real,
    du: real,
    dl: real,
}

// Per agent: its trade limits and the prices at which its curve meets them.
var<private> lo_lim: array<real, MAX_AGENTS>;
var<private> hi_lim: array<real, MAX_AGENTS>;
var<private> limit_lo: array<LimitPrice, MAX_AGENTS>;
var<private> limit_hi: array<LimitPrice, MAX_AGENTS>;

// rci::held_at_limit.
fn held_at_limit(st: AgentState, rp: RunParams) -> bool {
    return rp.dual_update == DUAL_EXACT && (st.du > 0.0 || st.dl > 0.0);
}

// rci::directional_slope.
fn directional_slope(i: u32, st: AgentState, rp: RunParams, downward: bool) -> real {
    var slope = real(0.0);
    if !held_at_limit(st, rp) {
        slope = slope_at(i, st.price - st.du + st.dl, downward);
    }
    return slope;
}

// rci::directional_gap (-1: none; a genuine gap is positive).
fn directional_gap(i: u32, st: AgentState, rp: RunParams, downward: bool) -> real {
    var gap = real(-1.0);
    if !held_at_limit(st, rp) {
        gap = next_break_distance(i, st.price - st.du + st.dl, downward);
    } else if downward && st.du > 0.0 {
        gap = st.du;
    } else if !downward && st.dl > 0.0 {
        gap = st.dl;
    }
    return gap;
}

// The genuine Newton signals of an agent (rci::NewtonSignals; a gap < 0: none).
struct Signals {
    slope_down: real,
    slope_up: real,
    gap_down: real,
    gap_up: real,
}

// NewtonSignals::of: directional_slope and directional_gap both ways, from two searches
// of the agent's curve (slope_at and next_break_distance fused, the same operations), so
// that the views, which need every agent's signals in every iteration, use few loops.
fn signals_of(a: u32, st: AgentState, rp: RunParams) -> Signals {
    var sig = Signals(real(0.0), real(0.0), real(-1.0), real(-1.0));
    if held_at_limit(st, rp) {
        if st.du > 0.0 {
            sig.gap_down = st.du;
        }
        if st.dl > 0.0 {
            sig.gap_up = st.dl;
        }
        return sig;
    }
    let price = st.price - st.du + st.dl;
    let n = curve_len[a];
    // slope_at's segments: the last breakpoint strictly below `price` (downward) and the
    // last one at or below it before the last breakpoint (upward); next_break_distance
    // from the same two searches.
    let kd = last_passing(a, true, BELOW, price, n);
    let not_above = last_passing(a, true, NOT_ABOVE, price, n);
    sig.gap_down = gap_below(a, price, kd);
    sig.gap_up = gap_above(a, price, not_above);
    if n >= 2u {
        // The upward segment starts before the last breakpoint (used for a price that
        // is not NaN, where NOT_ABOVE is AT_MOST).
        let ku = min(not_above, n - 2u);
        if price > first_price[a] && price <= last_price[a] {
            sig.slope_down = segment_slope(a, kd);
        }
        if price >= first_price[a] && price < last_price[a] {
            sig.slope_up = segment_slope(a, ku);
        }
    }
    return sig;
}

// rci::price_update, eq. (31)-(32): consensus with every neighbour (`prices` in agent
// order), innovation on the balance.
fn price_update(own: real, prices: array<AgentState, MAX_AGENTS>, n: u32, chi: real, kappa: real, mismatch: real) -> real {
    var disagreement = real(0.0);
    for (var j = 0u; j < n; j++) {
        disagreement += own - prices[j].price;
    }
    return own - chi * disagreement - kappa * mismatch;
}

// rci::respond: the duals, set point and power of agent i at its new price p.
fn respond(i: u32, me: AgentState, p: real, rp: RunParams) -> AgentState {
    // eq. (33)-(36): the exact multipliers of the agent's trade limits, or projected dual
    // ascent on them.
    var up = real(0.0);
    var low = real(0.0);
    if rp.dual_update == DUAL_GRADIENT {
        up = max(me.du + rp.xi * (me.power - hi_lim[i]), 0.0);
        low = max(me.dl + rp.xi * (lo_lim[i] - me.power), 0.0);
    } else if rp.dual_update == DUAL_EXACT {
        if !limit_hi[i].unbounded {
            up = max(p - limit_hi[i].price, 0.0);
        }
        if !limit_lo[i].unbounded {
            low = max(limit_lo[i].price - p, 0.0);
        }
    } else {
        fail(FAULT_DUAL_UPDATE, rp.dual_update);
    }
    // eq. (37)-(38), erratum 1: the lower multiplier raises the effective price.
    let set_point = export_at(i, p - up + low);
    // eq. (39)-(42).
    var ratio = real(1.0);
    if rp.power_update == UPDATE_RELAXED {
        ratio = (abs(me.power) + rp.relax_gamma) / (abs(set_point) + rp.relax_gamma);
    } else if rp.power_update != UPDATE_PLAIN {
        fail(FAULT_POWER_UPDATE, rp.power_update);
    }
    return AgentState(p, me.power + ratio * (set_point - me.power), up, low);
}

// note_message: whether an attack altered agent i's message m (its state `st`), or
// (`chi_altered`) its price was computed with a tampered chi.
fn message_altered(i: u32, m: u32, n: u32, st: AgentState, rp: RunParams, chi_altered: bool) -> bool {
    var altered = chi_altered || field_altered(ATTACK_PRICE, i, m, st.price)
        || field_altered(ATTACK_POWER, i, m, st.power)
        || field_altered(ATTACK_DUAL_UPPER, i, m, st.du)
        || field_altered(ATTACK_DUAL_LOWER, i, m, st.dl);
    // A stealthy wedge alters the price differently for different receivers.
    if !altered && wedges(m) {
        for (var r = 0u; r < n; r++) {
            altered = altered || (r != i && seen_price(i, r, m, st.price) != st.price);
        }
    }
    let slope = targets(ATTACK_SLOPE, i, m);
    let gap = targets(ATTACK_GAP, i, m);
    if !altered && (slope || gap) {
        let g = signals_of(i, st, rp);
        // A missing gap (the reference's infinity) stays missing.
        altered = (slope
            && (field_altered(ATTACK_SLOPE, i, m, g.slope_down)
                || field_altered(ATTACK_SLOPE, i, m, g.slope_up)))
            || (gap
                && ((g.gap_down >= 0.0 && field_altered(ATTACK_GAP, i, m, g.gap_down))
                    || (g.gap_up >= 0.0 && field_altered(ATTACK_GAP, i, m, g.gap_up))));
    }
    return altered;
}

// ---- The Newton step's memory (rci::NewtonMemory), one per view ----

struct NewtonMemory {
    lo: real,
    hi: real,
    last_step: real,
    step_before_last: real,
    lo_set: bool,
    hi_set: bool,
    have_last_step: bool,
    have_step_before_last: bool,
}

// The attack-free step uses memory[0]; under an undefended attack agent r's view uses
// memory[r].
var<private> memory: array<NewtonMemory, MAX_AGENTS>;

// NewtonMemory::default: an unbounded bracket and no step yet.
fn forget(r: u32) {
    memory[r] = NewtonMemory(real(0.0), real(0.0), real(0.0), real(0.0), false, false, false, false);
}

// NewtonMemory::kappa: the bracket's update, the step and the step memory's update.
fn newton_step(r: u32, mismatch: real, mean_price: real, range: PriceRange, slope: real, has_flat: bool, flat: real, rp: RunParams) -> real {
    var mem = memory[r];
    // The price bracket of the trade balance, valid while the duals do not move (exact
    // duals are functions of the price, so the balance stays one monotone function of
    // it): an excess puts the balancing price at most at the agents' highest price, a
    // shortage at least at their lowest (NewtonMemory::kappa).
    if mismatch > 0.0 {
        mem.hi = select(range.high, min(mem.hi, range.high), mem.hi_set);
        mem.hi_set = true;
    } else if mismatch < 0.0 {
        mem.lo = select(range.low, max(mem.lo, range.low), mem.lo_set);
        mem.lo_set = true;
    }
    let kappa = newton_kappa(
        mismatch, mean_price, slope, has_flat, flat, mem.lo, mem.hi, mem.lo_set, mem.hi_set,
        mem.step_before_last, mem.have_step_before_last, rp,
    );
    mem.step_before_last = mem.last_step;
    mem.have_step_before_last = mem.have_last_step;
    mem.last_step = abs(kappa * mismatch);
    mem.have_last_step = true;
    memory[r] = mem;
    return kappa;
}

// rci::scheduled_kappa for the constant and diminishing rules at `iteration` (iterations
// done before this one); `scheduled` false for newton.
struct Schedule {
    kappa: real,
    scheduled: bool,
}

fn scheduled_kappa(rp: RunParams, iteration: u32) -> Schedule {
    var schedule = Schedule(real(0.0), true);
    switch rp.step_rule {
        case STEP_CONSTANT: {
            schedule.kappa = rp.kappa;
        }
        case STEP_DIMINISHING: {
            schedule.kappa = rp.kappa / (1.0 + real(iteration) / rp.kappa_decay);
        }
        case STEP_NEWTON: {
            schedule.scheduled = false;
        }
        default: {
            fail(FAULT_STEP_RULE, rp.step_rule);
        }
    }
    return schedule;
}

// ---- Residuals and the stop rules ----

struct Residuals {
    price_change: real,
    power_change: real,
    dual_change: real,
    balance: real,
    price_spread: real,
}

// rci::residuals_between, in agent order.
fn residuals_between(before: array<AgentState, MAX_AGENTS>, after: array<AgentState, MAX_AGENTS>, n: u32) -> Residuals {
    var r = Residuals(real(0.0), real(0.0), real(0.0), real(0.0), real(0.0));
    var balance = real(0.0);
    for (var i = 0u; i < n; i++) {
        r.price_change = max(r.price_change, abs(after[i].price - before[i].price));
        r.power_change = max(r.power_change, abs(after[i].power - before[i].power));
        r.dual_change = max(max(r.dual_change, abs(after[i].du - before[i].du)), abs(after[i].dl - before[i].dl));
        balance += after[i].power;
    }
    r.balance = abs(balance);
    let range = range_of(after, n);
    r.price_spread = range.high - range.low;
    return r;
}

fn stop_rules_hold(r: Residuals, rp: RunParams) -> bool {
    return r.price_change < rp.price_tol && r.power_change < rp.power_tol
        && r.dual_change < rp.dual_tol && r.balance < rp.balance_tol
        && r.price_spread < rp.price_tol;
}

// rci::diverged: a comparison of finite values only.
fn diverged(states: array<AgentState, MAX_AGENTS>, n: u32) -> bool {
    var finite = true;
    for (var i = 0u; i < n; i++) {
        finite = finite && within_divergence_limit(states[i].price)
            && within_divergence_limit(states[i].power);
    }
    return !finite;
}

// rci::finish_step: whether the Newton memories forget their bracket (gradient duals moved
// in the iteration from `before` to `after`).
fn forgets_bracket(before: array<AgentState, MAX_AGENTS>, after: array<AgentState, MAX_AGENTS>, n: u32, rp: RunParams) -> bool {
    var moved = false;
    for (var i = 0u; i < n; i++) {
        moved = moved || after[i].du != before[i].du || after[i].dl != before[i].dl;
    }
    return moved && rp.dual_update == DUAL_GRADIENT;
}

// rci::price_range: the lowest and highest of the n agents' prices.
struct PriceRange {
    low: real,
    high: real,
}

fn range_of(states: array<AgentState, MAX_AGENTS>, n: u32) -> PriceRange {
    var r = PriceRange(states[0].price, states[0].price);
    for (var i = 1u; i < n; i++) {
        r.low = min(r.low, states[i].price);
        r.high = max(r.high, states[i].price);
    }
    return r;
}

// Agent j's message m as agent r receives it: its own as it is, another's as the
// attacks alter it (rci::view_of).
fn received(r: u32, j: u32, m: u32, st: AgentState) -> AgentState {
    if j == r {
        return st;
    }
    return AgentState(
        seen_price(j, r, m, st.price),
        seen(ATTACK_POWER, j, m, st.power),
        seen(ATTACK_DUAL_UPPER, j, m, st.du),
        seen(ATTACK_DUAL_LOWER, j, m, st.dl),
    );
}

// Widens `res` to the residuals of agent r's view of the iteration from the messages
// `before` (m - 1) to `after` (m): rci::residuals_between on the two views, accumulated
// as the views are formed.
fn widen_to_view(res: Residuals, r: u32, m: u32, before: array<AgentState, MAX_AGENTS>, after: array<AgentState, MAX_AGENTS>, n: u32) -> Residuals {
    var v = Residuals(real(0.0), real(0.0), real(0.0), real(0.0), real(0.0));
    let first = received(r, 0u, m, after[0]);
    var pmin = first.price;
    var pmax = first.price;
    var balance = real(0.0);
    for (var i = 0u; i < n; i++) {
        let o = received(r, i, m - 1u, before[i]);
        let a = received(r, i, m, after[i]);
        v.price_change = max(v.price_change, abs(a.price - o.price));
        v.power_change = max(v.power_change, abs(a.power - o.power));
        v.dual_change = max(max(v.dual_change, abs(a.du - o.du)), abs(a.dl - o.dl));
        pmin = min(pmin, a.price);
        pmax = max(pmax, a.price);
        balance += a.power;
    }
    return Residuals(
        max(res.price_change, v.price_change),
        max(res.power_change, v.power_change),
        max(res.dual_change, v.dual_change),
        max(res.balance, abs(balance)),
        max(res.price_spread, pmax - pmin),
    );
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn main(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let item = (wg.y * params.groups_x + wg.x) * WORKGROUP_SIZE + li;
    if item >= params.items {
        return;
    }
    let hours = params.hours;
    let n = params.agents;
    let run = item / hours;
    let hour = item % hours;
    let rp = runs[run];

    // The run's attacks on this hour (HourAttacks::any), and whether they alter the
    // receivers' views (HourAttacks::alters_views).
    attack_hour = hour;
    hour_bit = 0u;
    if hour < DAY_HOURS {
        hour_bit = 1u << hour;
    }
    var attacked = false;
    for (var k = 0u; k < MAX_ATTACKS; k++) {
        let s = attacks[run * MAX_ATTACKS + k];
        check_slot(s);
        run_slots[k] = s;
        attacked = attacked || (s.variable != ATTACK_NONE && (s.hours & hour_bit) != 0u);
    }
    if attacked && !ATTACKS {
        fail(FAULT_KERNEL_VARIANT, 1u);
    }
    attacked = attacked && ATTACKS;
    var views = false;
    var defended = false;
    switch rp.defence {
        case DEFENCE_UNDEFENDED: {
            views = attacked;
        }
        case DEFENCE_DEFENDED: {
            defended = true;
        }
        default: {
            fail(FAULT_DEFENCE, rp.defence);
        }
    }

    has_hourly = rp.hourly_offset != NO_HOURLY;
    var base = (rp.curve_set * hours + hour) * n;
    if has_hourly {
        hour_in = hourly[rp.hourly_offset + hour];
        base = hour_in.slot_base;
    }
    // The next load-table level's slots (read only for a blended pool curve).
    let next_base = base + n;
    for (var i = 0u; i < n; i++) {
        let s = slots[base + i];
        lo_lim[i] = s.min_export;
        hi_lim[i] = s.max_export;
        from_pool[i] = s.curve_len > 0u;
        curve_offset[i] = s.curve_offset;
        curve_len[i] = s.curve_len;
        blended[i] = from_pool[i] && has_hourly && hour_in.sg_weight != 0.0;
        if blended[i] && !BLEND {
            fail(FAULT_KERNEL_VARIANT, 2u);
        }
        if blended[i] {
            blend_offset[i] = slots[next_base + i].curve_offset;
            blend_w[i] = hour_in.sg_weight;
        }
        if !from_pool[i] {
            build_unit_curve(i, s, rp);
        }
    }
    // The prices at which each agent's own curve meets its trade limits (exact duals).
    for (var i = 0u; i < n; i++) {
        first_price[i] = cp(i, 0u);
        last_price[i] = cp(i, curve_len[i] - 1u);
        first_export[i] = ce(i, 0u);
        last_export[i] = ce(i, curve_len[i] - 1u);
        limit_lo[i] = lowest_price_reaching(i, lo_lim[i]);
        limit_hi[i] = highest_price_within(i, hi_lim[i]);
    }

    let traj = rp.trajectory_offset;
    let keep = traj != NO_TRAJECTORY;
    let hour_base = hour * (rp.max_iterations + 1u);

    var state: array<AgentState, MAX_AGENTS>;
    for (var i = 0u; i < n; i++) {
        // rci::start_price.
        var p0 = rp.initial_price;
        switch rp.start_price {
            case START_COMMON: {}
            case START_OWN_MARGINAL: {
                p0 = price_at_export(i, real(0.0));
            }
            default: {
                fail(FAULT_START_PRICE, rp.start_price);
            }
        }
        state[i] = AgentState(p0, export_at(i, p0), real(0.0), real(0.0));
        if keep {
            record(traj, hour_base, 0u, n, i, state[i]);
        }
        forget(i);
    }
    // Iteration 0's starting messages are counted with the first step.
    var tampered = 0u;
    if attacked {
        prepare(0u);
        for (var i = 0u; i < n; i++) {
            tampered += select(0u, 1u, message_altered(i, 0u, n, state[i], rp, false));
        }
    }

    var res = Residuals(real(0.0), real(0.0), real(0.0), real(0.0), real(0.0));
    var converged = false;
    var iterations = rp.max_iterations;
    var next: array<AgentState, MAX_AGENTS>;

    for (var k = 0u; k < rp.max_iterations && fault == 0u; k++) {
        // The messages of this iteration are m; the current states are those of m - 1.
        let m = k + 1u;
        if attacked {
            prepare(m);
        }
        let schedule = scheduled_kappa(rp, k);
        // Agents (bit i) whose price a chi attack altered.
        var chi_altered = 0u;
        if !views {
            // rci::step_free: every agent uses the same messages and one step.
            var mismatch = real(0.0);
            var price_sum = real(0.0);
            for (var i = 0u; i < n; i++) {
                mismatch += state[i].power;
            }
            for (var i = 0u; i < n; i++) {
                price_sum += state[i].price;
            }
            var kappa = schedule.kappa;
            if !schedule.scheduled {
                let downward = mismatch > 0.0;
                // An agent held at a limit by an exact dual has slope 0; its response
                // resumes where the dual vanishes.
                var slope = real(0.0);
                for (var i = 0u; i < n; i++) {
                    slope += directional_slope(i, state[i], rp, downward);
                }
                var has_flat = false;
                var flat = real(0.0);
                if slope < rp.slope_floor {
                    for (var i = 0u; i < n; i++) {
                        let d = directional_gap(i, state[i], rp, downward);
                        if d >= 0.0 && (!has_flat || d < flat) {
                            flat = d;
                            has_flat = true;
                        }
                    }
                }
                kappa = newton_step(0u, mismatch, price_sum / real(n), range_of(state, n), slope, has_flat, flat, rp);
            }
            for (var i = 0u; i < n; i++) {
                let p = price_update(state[i].price, state, n, rp.chi, kappa, mismatch);
                // Defended: a price computed with a tampered chi is rejected (and the
                // committed chi's price used).
                if attacked && targets(ATTACK_CHI, i, m) {
                    let chi = seen(ATTACK_CHI, i, m, rp.chi);
                    if price_update(state[i].price, state, n, chi, kappa, mismatch) != p {
                        chi_altered |= 1u << i;
                    }
                }
                next[i] = respond(i, state[i], p, rp);
            }
            res = residuals_between(state, next, n);
        } else {
            // rci::step_views: agent r steps on its view of the messages of m - 1, with
            // its own Newton memory and its own (possibly attacked) chi.
            var signals: array<Signals, MAX_AGENTS>;
            if !schedule.scheduled {
                for (var j = 0u; j < n; j++) {
                    signals[j] = signals_of(j, state[j], rp);
                }
            }
            for (var r = 0u; r < n; r++) {
                var view: array<AgentState, MAX_AGENTS>;
                for (var j = 0u; j < n; j++) {
                    view[j] = received(r, j, m - 1u, state[j]);
                }
                var mismatch = real(0.0);
                for (var j = 0u; j < n; j++) {
                    mismatch += view[j].power;
                }
                var kappa = schedule.kappa;
                if !schedule.scheduled {
                    let downward = mismatch > 0.0;
                    var slope = real(0.0);
                    for (var j = 0u; j < n; j++) {
                        var x = select(signals[j].slope_up, signals[j].slope_down, downward);
                        if j != r {
                            x = seen(ATTACK_SLOPE, j, m - 1u, x);
                        }
                        slope += x;
                    }
                    // rci::nearest_gap over the gaps as received (an attacked gap may be
                    // negative, so presence is a flag).
                    var has_flat = false;
                    var flat = real(0.0);
                    if slope < rp.slope_floor {
                        for (var j = 0u; j < n; j++) {
                            var d = select(signals[j].gap_up, signals[j].gap_down, downward);
                            if d >= 0.0 {
                                if j != r {
                                    d = seen(ATTACK_GAP, j, m - 1u, d);
                                }
                                flat = select(d, min(flat, d), has_flat);
                                has_flat = true;
                            }
                        }
                    }
                    var price_sum = real(0.0);
                    for (var j = 0u; j < n; j++) {
                        price_sum += view[j].price;
                    }
                    kappa = newton_step(r, mismatch, price_sum / real(n), range_of(view, n), slope, has_flat, flat, rp);
                }
                let own = state[r].price;
                let chi = seen(ATTACK_CHI, r, m, rp.chi);
                let p = price_update(own, view, n, chi, kappa, mismatch);
                if targets(ATTACK_CHI, r, m) && price_update(own, view, n, rp.chi, kappa, mismatch) != p {
                    chi_altered |= 1u << r;
                }
                next[r] = respond(r, state[r], p, rp);
            }
            // The residuals: the largest over the agents' views of m - 1 and m.
            res = Residuals(real(0.0), real(0.0), real(0.0), real(0.0), real(0.0));
            for (var r = 0u; r < n; r++) {
                res = widen_to_view(res, r, m, state, next, n);
            }
        }
        if forgets_bracket(state, next, n, rp) {
            for (var r = 0u; r < n; r++) {
                forget(r);
            }
        }
        for (var i = 0u; i < n; i++) {
            state[i] = next[i];
        }
        if attacked {
            for (var i = 0u; i < n; i++) {
                let chi = (chi_altered & (1u << i)) != 0u;
                tampered += select(0u, 1u, message_altered(i, m, n, state[i], rp, chi));
            }
        }
        if keep {
            for (var i = 0u; i < n; i++) {
                record(traj, hour_base, m, n, i, state[i]);
            }
        }
        // A diverged iterate can never meet the stop rules: not converged after k + 1
        // iterations, as in the reference.
        if diverged(state, n) {
            iterations = m;
            break;
        }
        if stop_rules_hold(res, rp) {
            converged = true;
            iterations = m;
            break;
        }
    }

    var out: HourOut;
    var price_sum = real(0.0);
    for (var i = 0u; i < n; i++) {
        price_sum += state[i].price;
    }
    out.price = price_sum / real(n);
    out.exchange = select(real(0.0), state[0].power, n > 1u);
    out.price_change = res.price_change;
    out.power_change = res.power_change;
    out.dual_change = res.dual_change;
    out.balance = res.balance;
    out.price_spread = res.price_spread;
    for (var i = 0u; i < MAX_AGENTS; i++) {
        out.power[i] = real(0.0);
        out.cost[i] = real(0.0);
    }
    for (var i = 0u; i < n; i++) {
        out.power[i] = state[i].power;
        out.cost[i] = cost_at_export(i, state[i].power);
    }
    out.iterations = iterations;
    out.converged = select(0u, 1u, converged);
    out.tampered = tampered;
    out.rejected = select(0u, tampered, defended);
    // Any loop of this invocation cut short, in the negotiation or after it.
    loops_cut();
    out.fault = fault;
    out.fault_code = fault_code;
    outputs[item] = out;
}

// Second pass of a chunk whose runs were asked for their summaries only: one invocation per
// run reduces its hours' records, which stay on the device, in hour order, exactly as
// `RunSummary::of` does (sums from 0, extremes from the first hour), so the result does not
// depend on the chunking. 1-D over the chunk's runs, in rows of `num_workgroups.x` groups.
@compute @workgroup_size(WORKGROUP_SIZE)
fn reduce_runs(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let run = (wg.y * groups.x + wg.x) * WORKGROUP_SIZE + li;
    let hours = params.hours;
    if hours == 0u || run >= params.items / hours {
        return;
    }
    let base = run * hours;
    var r: RunOut;
    r.price_min = outputs[base].price;
    r.price_max = outputs[base].price;
    for (var h = 0u; h < hours; h++) {
        let o = outputs[base + h];
        r.price_sum += o.price;
        r.price_min = min(r.price_min, o.price);
        r.price_max = max(r.price_max, o.price);
        r.exchange_sum += o.exchange;
        for (var a = 0u; a < MAX_AGENTS; a++) {
            r.cost_sum[a] += o.cost[a];
        }
        r.max_abs_balance = max(r.max_abs_balance, abs(o.balance));
        r.iterations += o.iterations;
        r.iterations_max = max(r.iterations_max, o.iterations);
        r.converged_hours += o.converged;
        r.tampered += o.tampered;
        r.rejected += o.rejected;
        if o.fault != 0u && r.fault == 0u {
            r.fault = o.fault;
            r.fault_code = o.fault_code;
            r.fault_hour = h;
        }
    }
    run_outputs[run] = r;
}
