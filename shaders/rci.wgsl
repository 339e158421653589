// The RCI negotiation of one market hour of one run per invocation: the WGSL twin of
// `rci::negotiate`, the loop of `rci::step` (src/rci.rs), evaluated over the flat batch of
// src/engine/batch.rs.
//
// One source serves both precisions: the host prepends
//   alias real = f32;   or   alias real = f64;
// plus the constants DIVERGENCE_LIMIT, MAX_AGENTS, MAX_UNITS, MAX_POINTS and WORKGROUP_SIZE, and
// the codes of the step rule (STEP_*), the power update (UPDATE_*) and the dual update
// (DUAL_*), the agent flags (SCALE_*), the markers NO_TRAJECTORY and NO_HOURLY and the
// pool's UNIT_STRIDE, all generated from the Rust definitions (see `engine::gpu::shader_source`). The f64 variant may only use + - * / fma sqrt min max abs
// clamp select: Mesa's lavapipe returns garbage for f64 transcendentals (wgpu issue 6087),
// and a unit test scans the generated source for them.
//
// Invocation ordering: invocation `item` of the 2-D dispatch handles run `item / hours`
// and hour `item % hours` of the chunk, so the hours of a run sit side by side in a
// workgroup. There is no data-dependent recursion: each invocation runs one loop of at most
// `max_iterations` iterations and leaves it when its stop rules hold; the order of every
// floating-point operation follows the CPU reference.
//
// Infinities do not exist in WGSL, so the Newton price bracket [lo, hi] of the reference
// (initially [-inf, inf]) is carried as values plus "set" flags.

struct Params {
    // (run, hour) pairs in this chunk.
    items: u32,
    hours: u32,
    agents: u32,
    // Workgroups along x of the 2-D dispatch.
    groups_x: u32,
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

// Mirror of `engine::gpu::AttackSlot*`; kind 0 = no attack (the only kind for now).
struct AttackSlot {
    kind: u32,
    hour: u32,
    first_iteration: u32,
    last_iteration: u32,
    target_agent: u32,
    _pad: u32,
    magnitude: real,
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
// This (run, hour)'s per-hour inputs, valid when has_hourly.
var<private> has_hourly: bool;
var<private> hour_in: HourIn;
var<private> local_prices: array<array<real, MAX_POINTS>, MAX_AGENTS>;
var<private> local_exports: array<array<real, MAX_POINTS>, MAX_AGENTS>;
var<private> local_costs: array<array<real, MAX_POINTS>, MAX_AGENTS>;

fn cp(a: u32, k: u32) -> real {
    if from_pool[a] {
        let p = pool[curve_offset[a] + k];
        if blended[a] {
            return p + blend_w[a] * (pool[blend_offset[a] + k] - p);
        }
        return p;
    }
    return local_prices[a][k];
}

fn ce(a: u32, k: u32) -> real {
    if from_pool[a] {
        let e = pool[curve_offset[a] + curve_len[a] + k];
        if blended[a] {
            return e + blend_w[a] * (pool[blend_offset[a] + curve_len[a] + k] - e);
        }
        return e;
    }
    return local_exports[a][k];
}

fn cc(a: u32, k: u32) -> real {
    if from_pool[a] {
        let c = pool[curve_offset[a] + 2u * curve_len[a] + k];
        if blended[a] {
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

// OfferCurve::export_at.
fn export_at(a: u32, price: real) -> real {
    let n = curve_len[a];
    if price <= cp(a, 0u) {
        return ce(a, 0u);
    }
    if price >= cp(a, n - 1u) {
        return ce(a, n - 1u);
    }
    // Last breakpoint with prices[k] <= price (partition_point - 1).
    var k = 0u;
    for (var j = 1u; j < n - 1u; j++) {
        if cp(a, j) <= price {
            k = j;
        }
    }
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
        if !(price > cp(a, 0u) && price <= cp(a, n - 1u)) {
            return real(0.0);
        }
        // Last breakpoint strictly below `price`.
        for (var j = 1u; j < n; j++) {
            if cp(a, j) < price {
                k = j;
            }
        }
    } else {
        if !(price >= cp(a, 0u) && price < cp(a, n - 1u)) {
            return real(0.0);
        }
        for (var j = 1u; j < n - 1u; j++) {
            if cp(a, j) <= price {
                k = j;
            }
        }
    }
    let dp = cp(a, k + 1u) - cp(a, k);
    if dp > 0.0 {
        return (ce(a, k + 1u) - ce(a, k)) / dp;
    }
    return real(0.0);
}

// OfferCurve::cost_at_export (with price_at_export inlined).
// OfferCurve::next_breakpoint as a distance from `price` (-1: none in that direction).
fn next_break_distance(a: u32, price: real, downward: bool) -> real {
    let n = curve_len[a];
    var best = real(-1.0);
    for (var j = 0u; j < n; j++) {
        let p = cp(a, j);
        if downward {
            // Ascending prices: the last one below `price` is the nearest.
            if p < price {
                best = price - p;
            }
        } else if p > price && best < 0.0 {
            best = p - price;
        }
    }
    return best;
}

fn cost_at_export(a: u32, x: real) -> real {
    let n = curve_len[a];
    if x <= ce(a, 0u) {
        return cc(a, 0u) + (x - ce(a, 0u)) * cp(a, 0u);
    }
    if x >= ce(a, n - 1u) {
        return cc(a, n - 1u) + (x - ce(a, n - 1u)) * cp(a, n - 1u);
    }
    var k = 0u;
    for (var j = 1u; j < n - 1u; j++) {
        if ce(a, j) <= x {
            k = j;
        }
    }
    let dx = ce(a, k + 1u) - ce(a, k);
    let t = (x - ce(a, k)) / dx;
    let p = cp(a, k) + t * (cp(a, k + 1u) - cp(a, k));
    // Trapezoid rule: exact for the linear marginal cost of a segment.
    return cc(a, k) + (x - ce(a, k)) * 0.5 * (cp(a, k) + p);
}

// rci::newton_kappa, with the bracket's "finite" tests as flags.
fn newton_kappa(
    mismatch: real,
    mean_price: real,
    slope: real,
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
    // On a flat stretch: step to the nearest breakpoint (flat_distance < 0: none).
    var kappa = newton;
    if flat_distance >= 0.0 && slope < rp.slope_floor && !balanced {
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
    let long_step = have_step_before_last && abs(target_price - mean_price) > 0.5 * step_before_last;
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
    if x <= ce(a, 0u) {
        return cp(a, 0u);
    }
    if x >= ce(a, n - 1u) {
        return cp(a, n - 1u);
    }
    // Last breakpoint with export <= x (partition_point - 1); the next one exports more.
    var k = 0u;
    for (var j = 1u; j < n; j++) {
        if ce(a, j) <= x {
            k = j;
        }
    }
    let t = (x - ce(a, k)) / (ce(a, k + 1u) - ce(a, k));
    return cp(a, k) + t * (cp(a, k + 1u) - cp(a, k));
}

// OfferCurve::highest_price_within.
fn highest_price_within(a: u32, x: real) -> LimitPrice {
    let n = curve_len[a];
    if ce(a, n - 1u) <= x {
        return LimitPrice(real(0.0), true);
    }
    if ce(a, 0u) > x {
        return LimitPrice(cp(a, 0u), false);
    }
    // Last breakpoint with export <= x (partition_point - 1).
    var k = 0u;
    for (var j = 1u; j < n; j++) {
        if ce(a, j) <= x {
            k = j;
        }
    }
    let t = (x - ce(a, k)) / (ce(a, k + 1u) - ce(a, k));
    return LimitPrice(cp(a, k) + t * (cp(a, k + 1u) - cp(a, k)), false);
}

// OfferCurve::lowest_price_reaching.
fn lowest_price_reaching(a: u32, x: real) -> LimitPrice {
    let n = curve_len[a];
    if ce(a, 0u) >= x {
        return LimitPrice(real(0.0), true);
    }
    if ce(a, n - 1u) < x {
        return LimitPrice(cp(a, n - 1u), false);
    }
    // First breakpoint with export >= x (partition_point).
    var k = n - 1u;
    for (var j = n - 1u; j >= 1u; j--) {
        if ce(a, j) >= x {
            k = j;
        }
    }
    let t = (x - ce(a, k - 1u)) / (ce(a, k) - ce(a, k - 1u));
    return LimitPrice(cp(a, k - 1u) + t * (cp(a, k) - cp(a, k - 1u)), false);
}

fn record(offset: u32, hour_base: u32, k: u32, n: u32, i: u32, price: real, power: real, du: real, dl: real) {
    let o = offset + ((hour_base + k) * n + i) * 4u;
    trajectory[o] = price;
    trajectory[o + 1u] = power;
    trajectory[o + 2u] = du;
    trajectory[o + 3u] = dl;
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
    // The attack slot is read so the attack model only has to add its branch; kind 0
    // (none, the only kind the host accepts for now) changes nothing.
    _ = attacks[run].kind;

    var lo_lim: array<real, MAX_AGENTS>;
    var hi_lim: array<real, MAX_AGENTS>;
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
        if blended[i] {
            blend_offset[i] = slots[next_base + i].curve_offset;
            blend_w[i] = hour_in.sg_weight;
        }
        if !from_pool[i] {
            build_unit_curve(i, s, rp);
        }
    }
    // The prices at which each agent's own curve meets its trade limits (exact duals).
    var limit_lo: array<LimitPrice, MAX_AGENTS>;
    var limit_hi: array<LimitPrice, MAX_AGENTS>;
    for (var i = 0u; i < n; i++) {
        limit_lo[i] = lowest_price_reaching(i, lo_lim[i]);
        limit_hi[i] = highest_price_within(i, hi_lim[i]);
    }

    let traj = rp.trajectory_offset;
    let keep = traj != NO_TRAJECTORY;
    let hour_base = hour * (rp.max_iterations + 1u);

    var price: array<real, MAX_AGENTS>;
    var power: array<real, MAX_AGENTS>;
    var du: array<real, MAX_AGENTS>;
    var dl: array<real, MAX_AGENTS>;
    for (var i = 0u; i < n; i++) {
        // rci::start_price.
        var p0 = rp.initial_price;
        if rp.start_price == START_OWN_MARGINAL {
            p0 = price_at_export(i, real(0.0));
        }
        price[i] = p0;
        power[i] = export_at(i, p0);
        du[i] = real(0.0);
        dl[i] = real(0.0);
        if keep {
            record(traj, hour_base, 0u, n, i, price[i], power[i], du[i], dl[i]);
        }
    }

    // Price bracket of the trade balance, valid while the duals do not move (exact duals
    // are functions of the price, so the balance stays one monotone function of it).
    var lo = real(0.0);
    var hi = real(0.0);
    var lo_set = false;
    var hi_set = false;
    // The last two Newton price steps (`RciState`'s `last_step` and
    // `step_before_last`; unset: infinite).
    var last_step = real(0.0);
    var have_last_step = false;
    var step_before_last = real(0.0);
    var have_step_before_last = false;
    var r_price = real(0.0);
    var r_power = real(0.0);
    var r_dual = real(0.0);
    var r_balance = real(0.0);
    var r_spread = real(0.0);
    var converged = false;
    var iterations = rp.max_iterations;
    var next_price: array<real, MAX_AGENTS>;
    var next_power: array<real, MAX_AGENTS>;
    var next_du: array<real, MAX_AGENTS>;
    var next_dl: array<real, MAX_AGENTS>;

    for (var k = 0u; k < rp.max_iterations; k++) {
        var mismatch = real(0.0);
        var price_sum = real(0.0);
        for (var i = 0u; i < n; i++) {
            mismatch += power[i];
        }
        for (var i = 0u; i < n; i++) {
            price_sum += price[i];
        }
        let mean_price = price_sum / real(n);
        var kappa = rp.kappa;
        if rp.step_rule == STEP_DIMINISHING {
            kappa = rp.kappa / (1.0 + real(k) / rp.kappa_decay);
        } else if rp.step_rule == STEP_NEWTON {
            if mismatch > 0.0 {
                hi = select(mean_price, min(hi, mean_price), hi_set);
                hi_set = true;
            } else if mismatch < 0.0 {
                lo = select(mean_price, max(lo, mean_price), lo_set);
                lo_set = true;
            }
            let downward = mismatch > 0.0;
            // An agent held at a limit by an exact dual has slope 0; its response resumes
            // where the dual vanishes.
            var slope = real(0.0);
            for (var i = 0u; i < n; i++) {
                let held = rp.dual_update == DUAL_EXACT && (du[i] > 0.0 || dl[i] > 0.0);
                if !held {
                    slope += slope_at(i, price[i] - du[i] + dl[i], downward);
                }
            }
            var flat_distance = real(-1.0);
            if slope < rp.slope_floor {
                for (var i = 0u; i < n; i++) {
                    let held = rp.dual_update == DUAL_EXACT && (du[i] > 0.0 || dl[i] > 0.0);
                    var d = real(-1.0);
                    if held {
                        if downward && du[i] > 0.0 {
                            d = du[i];
                        } else if !downward && dl[i] > 0.0 {
                            d = dl[i];
                        }
                    } else {
                        d = next_break_distance(i, price[i] - du[i] + dl[i], downward);
                    }
                    if d >= 0.0 && (flat_distance < 0.0 || d < flat_distance) {
                        flat_distance = d;
                    }
                }
            }
            kappa = newton_kappa(
                mismatch, mean_price, slope, flat_distance, lo, hi, lo_set, hi_set,
                step_before_last, have_step_before_last, rp,
            );
            step_before_last = last_step;
            have_step_before_last = have_last_step;
            last_step = abs(kappa * mismatch);
            have_last_step = true;
        }
        var duals_moved = false;
        for (var i = 0u; i < n; i++) {
            // eq. (31)-(32): consensus with every neighbour, innovation on the balance.
            var disagreement = real(0.0);
            for (var j = 0u; j < n; j++) {
                disagreement += price[i] - price[j];
            }
            let p = price[i] - rp.chi * disagreement - kappa * mismatch;
            // eq. (33)-(36): the exact multipliers of the agent's trade limits, or projected
            // dual ascent on them.
            var up = real(0.0);
            var low = real(0.0);
            if rp.dual_update == DUAL_GRADIENT {
                up = max(du[i] + rp.xi * (power[i] - hi_lim[i]), 0.0);
                low = max(dl[i] + rp.xi * (lo_lim[i] - power[i]), 0.0);
            } else if rp.dual_update == DUAL_EXACT {
                if !limit_hi[i].unbounded {
                    up = max(p - limit_hi[i].price, 0.0);
                }
                if !limit_lo[i].unbounded {
                    low = max(limit_lo[i].price - p, 0.0);
                }
            }
            duals_moved = duals_moved || up != du[i] || low != dl[i];
            // eq. (37)-(38), erratum 1: the lower multiplier raises the effective price.
            let set_point = export_at(i, p - up + low);
            // eq. (39)-(42).
            var ratio = real(1.0);
            if rp.power_update == UPDATE_RELAXED {
                ratio = (abs(power[i]) + rp.relax_gamma) / (abs(set_point) + rp.relax_gamma);
            }
            next_price[i] = p;
            next_power[i] = power[i] + ratio * (set_point - power[i]);
            next_du[i] = up;
            next_dl[i] = low;
        }
        if duals_moved && rp.dual_update == DUAL_GRADIENT {
            lo_set = false;
            hi_set = false;
            have_last_step = false;
            have_step_before_last = false;
        }
        // rci::residuals_between, then the swap.
        r_price = real(0.0);
        r_power = real(0.0);
        r_dual = real(0.0);
        var pmin = next_price[0];
        var pmax = next_price[0];
        var balance = real(0.0);
        for (var i = 0u; i < n; i++) {
            r_price = max(r_price, abs(next_price[i] - price[i]));
            r_power = max(r_power, abs(next_power[i] - power[i]));
            r_dual = max(max(r_dual, abs(next_du[i] - du[i])), abs(next_dl[i] - dl[i]));
            pmin = min(pmin, next_price[i]);
            pmax = max(pmax, next_price[i]);
            price[i] = next_price[i];
            power[i] = next_power[i];
            du[i] = next_du[i];
            dl[i] = next_dl[i];
            balance += power[i];
        }
        r_balance = abs(balance);
        r_spread = pmax - pmin;
        if keep {
            for (var i = 0u; i < n; i++) {
                record(traj, hour_base, k + 1u, n, i, price[i], power[i], du[i], dl[i]);
            }
        }
        // A diverged iterate can never meet the stop rules: not converged after k + 1
        // iterations, as in the reference.
        var finite = true;
        for (var i = 0u; i < n; i++) {
            finite = finite && within_divergence_limit(price[i])
                && within_divergence_limit(power[i]);
        }
        if !finite {
            iterations = k + 1u;
            break;
        }
        if r_price < rp.price_tol && r_power < rp.power_tol && r_dual < rp.dual_tol
            && r_balance < rp.balance_tol && r_spread < rp.price_tol {
            converged = true;
            iterations = k + 1u;
            break;
        }
    }

    var out: HourOut;
    var price_sum = real(0.0);
    for (var i = 0u; i < n; i++) {
        price_sum += price[i];
    }
    out.price = price_sum / real(n);
    out.exchange = select(real(0.0), power[0], n > 1u);
    out.price_change = r_price;
    out.power_change = r_power;
    out.dual_change = r_dual;
    out.balance = r_balance;
    out.price_spread = r_spread;
    for (var i = 0u; i < MAX_AGENTS; i++) {
        out.power[i] = real(0.0);
        out.cost[i] = real(0.0);
    }
    for (var i = 0u; i < n; i++) {
        out.power[i] = power[i];
        out.cost[i] = cost_at_export(i, power[i]);
    }
    out.iterations = iterations;
    out.converged = select(0u, 1u, converged);
    outputs[item] = out;
}
