// Settlement heads of a chunk's runs on the device (adapters with f64), so that a sweep
// that writes only the `runs` table reads back no hour record: the SHA-256 chain of
// `ledger::chain`, over the records `rci.wgsl`'s `main` left in the device's memory, in
// either precision.
//
// Passes, after `main`:
// - f32 records only, `reduce_wide`, one invocation per run: `reduce_runs` in f64 over
//   the records widened to f64, as the host sums them (`RunSummary::of` of the records it
//   reads back), into `wide` (the layout of the f64 kernel's `RunOut`); an f64 kernel's
//   own `reduce_runs` already sums in f64;
// - `settle_values` (f64 records) or `settle_values32` (f32 records, widened exactly),
//   one invocation per (run, hour): the hour's price, exchange and settlement cost
//   `|exchange| * price` (an IEEE-754 double product as on the host; exact for widened
//   f32 values) and a flag, stored to `settled`;
// - `settle_heads`, one invocation per run: from the host's `h_0 = SHA256(domain || run)`,
//   `h_{k+1} = SHA256(h_k || settlement bytes of hour k)` for every hour, written to
//   `heads`, with a flag the host turns into an error: 1 when a price, exchange or cost
//   is not finite or a subnormal is involved (where a device may flush to zero), 2 when
//   the driver cut the pass's loops short.
// `settle_heads` reads the settled values as 32-bit words: WGSL has no bitcast of an f64,
// and the two passes see the buffer under two types.
//
// Injected by the host (`engine::gpu::settle_source`): RECORD_WORDS (u32 words per f64
// hour record), PRICE_WORD and EXCHANGE_WORD (the low words of its two f64 fields), the
// f32 record's word offsets R32_* and its size RECORD32_WORDS, SUBNORMAL_FAULT (the
// `fault` of a widened sum with a subnormal term), MAX_AGENTS, SETTLEMENT_VERSION and
// SETTLEMENT_TAG (the encoding's first two bytes), AGENT_MICROGRID and AGENT_SMART_GRID
// (the agent indices of `ledger::chain`), and WORKGROUP_SIZE.

struct SettleParams {
    items: u32,
    hours: u32,
    groups_x: u32,
    // Always 2 (`engine::gpu::LOOP_PROBE`): the trip count of the loop-cut probe.
    loop_probe: u32,
}

// Mirror of `engine::gpu::RunOut64` (the f64 kernel's `RunOut`).
struct RunWide {
    price_sum: f64,
    price_min: f64,
    price_max: f64,
    exchange_sum: f64,
    cost_sum: array<f64, MAX_AGENTS>,
    max_abs_balance: f64,
    iterations: u32,
    iterations_max: u32,
    converged_hours: u32,
    tampered: u32,
    rejected: u32,
    fault: u32,
    fault_code: u32,
    fault_hour: u32,
}

@group(0) @binding(0) var<uniform> sp: SettleParams;
@group(0) @binding(1) var<storage, read> records: array<f64>;
@group(0) @binding(2) var<storage, read_write> settled: array<f64>;
@group(0) @binding(4) var<storage, read> settled_words: array<u32>;
@group(0) @binding(5) var<storage, read> starts: array<u32>;
@group(0) @binding(6) var<storage, read_write> heads: array<u32>;
@group(0) @binding(7) var<storage, read> records32: array<f32>;
@group(0) @binding(8) var<storage, read_write> wide: array<RunWide>;

// The invocation's index in a 2-D dispatch of rows of `sp.groups_x` workgroups.
fn invocation(wg: vec3<u32>, li: u32) -> u32 {
    return (wg.y * sp.groups_x + wg.x) * WORKGROUP_SIZE + li;
}

// Whether `run` is a run of the chunk (a per-run pass's invocation past the last has
// nothing to do).
fn is_run(run: u32) -> bool {
    return sp.hours != 0u && run < sp.items / sp.hours;
}

// f64s per item in `settled`: price, exchange, cost, flag (1: not widened exactly).
const SETTLED: u32 = 4u;

@compute @workgroup_size(WORKGROUP_SIZE)
fn settle_values(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let item = invocation(wg, li);
    if item >= sp.items {
        return;
    }
    let base = item * (RECORD_WORDS / 2u);
    let price = records[base + PRICE_WORD / 2u];
    let exchange = records[base + EXCHANGE_WORD / 2u];
    settled[SETTLED * item] = price;
    settled[SETTLED * item + 1u] = exchange;
    settled[SETTLED * item + 2u] = abs(exchange) * price;
    settled[SETTLED * item + 3u] = 0.0;
}

// A subnormal f32, which a device may flush to zero when it widens it.
fn subnormal32(x: f32) -> bool {
    let b = bitcast<u32>(x);
    return (b & 0x7f800000u) == 0u && (b & 0x007fffffu) != 0u;
}

// Field `word` of f32 record `item`.
fn field32(item: u32, word: u32) -> f32 {
    return records32[item * RECORD32_WORDS + word];
}

// Unsigned field `word` of f32 record `item`.
fn count32(item: u32, word: u32) -> u32 {
    return bitcast<u32>(field32(item, word));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn settle_values32(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let item = invocation(wg, li);
    if item >= sp.items {
        return;
    }
    let p32 = field32(item, R32_PRICE);
    let x32 = field32(item, R32_EXCHANGE);
    // Widening is exact, and so is the product of two widened f32 values in f64.
    let price = f64(p32);
    let exchange = f64(x32);
    settled[SETTLED * item] = price;
    settled[SETTLED * item + 1u] = exchange;
    settled[SETTLED * item + 2u] = abs(exchange) * price;
    settled[SETTLED * item + 3u] = f64(select(0u, 1u, subnormal32(p32) || subnormal32(x32)));
}

// `reduce_runs` of rci.wgsl over f32 records widened to f64, summed in f64 in hour order
// as `RunSummary::of` sums the records the host reads back. A subnormal term, which the
// device may flush when widening it, sets `fault` to SUBNORMAL_FAULT (with its hour).
@compute @workgroup_size(WORKGROUP_SIZE)
fn reduce_wide(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let run = invocation(wg, li);
    let hours = sp.hours;
    if !is_run(run) {
        return;
    }
    let base = run * hours;
    var r: RunWide;
    r.price_min = f64(field32(base, R32_PRICE));
    r.price_max = r.price_min;
    for (var h = 0u; h < hours; h++) {
        let item = base + h;
        let p32 = field32(item, R32_PRICE);
        let x32 = field32(item, R32_EXCHANGE);
        let b32 = field32(item, R32_BALANCE);
        var tiny = subnormal32(p32) || subnormal32(x32) || subnormal32(b32);
        let price = f64(p32);
        r.price_sum += price;
        r.price_min = min(r.price_min, price);
        r.price_max = max(r.price_max, price);
        r.exchange_sum += f64(x32);
        for (var a = 0u; a < MAX_AGENTS; a++) {
            let c32 = field32(item, R32_COST + a);
            tiny = tiny || subnormal32(c32);
            r.cost_sum[a] += f64(c32);
        }
        r.max_abs_balance = max(r.max_abs_balance, abs(f64(b32)));
        let iterations = count32(item, R32_ITERATIONS);
        r.iterations += iterations;
        r.iterations_max = max(r.iterations_max, iterations);
        r.converged_hours += count32(item, R32_CONVERGED);
        r.tampered += count32(item, R32_TAMPERED);
        r.rejected += count32(item, R32_REJECTED);
        let fault = count32(item, R32_FAULT);
        if fault != 0u && r.fault == 0u {
            r.fault = fault;
            r.fault_code = count32(item, R32_FAULT_CODE);
            r.fault_hour = h;
        }
        if tiny && r.fault == 0u {
            r.fault = SUBNORMAL_FAULT;
            r.fault_hour = h;
        }
    }
    wide[run] = r;
}

const K: array<u32, 64> = array<u32, 64>(
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
);

const IV: array<u32, 8> = array<u32, 8>(
    0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
);

fn rotr(x: u32, n: u32) -> u32 {
    return (x >> n) | (x << (32u - n));
}

// The message schedule's first 16 words: one block, big-endian words.
var<private> w: array<u32, 64>;
var<private> state: array<u32, 8>;

// SHA-256's compression of the block in `w[0..16]` into `state` (FIPS 180-4, 6.2.2).
fn compress() {
    for (var t = 16u; t < 64u; t++) {
        let s0 = rotr(w[t - 15u], 7u) ^ rotr(w[t - 15u], 18u) ^ (w[t - 15u] >> 3u);
        let s1 = rotr(w[t - 2u], 17u) ^ rotr(w[t - 2u], 19u) ^ (w[t - 2u] >> 10u);
        w[t] = w[t - 16u] + s0 + w[t - 7u] + s1;
    }
    var a = state[0];
    var b = state[1];
    var c = state[2];
    var d = state[3];
    var e = state[4];
    var f = state[5];
    var g = state[6];
    var h = state[7];
    for (var t = 0u; t < 64u; t++) {
        let big1 = rotr(e, 6u) ^ rotr(e, 11u) ^ rotr(e, 25u);
        let ch = (e & f) ^ (~e & g);
        let t1 = h + big1 + ch + K[t] + w[t];
        let big0 = rotr(a, 2u) ^ rotr(a, 13u) ^ rotr(a, 22u);
        let maj = (a & b) ^ (a & c) ^ (b & c);
        let t2 = big0 + maj;
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    state[0] += a;
    state[1] += b;
    state[2] += c;
    state[3] += d;
    state[4] += e;
    state[5] += f;
    state[6] += g;
    state[7] += h;
}

// A little-endian u32 as four bytes, swapped into a big-endian word.
fn swap(x: u32) -> u32 {
    return (x >> 24u) | ((x >> 8u) & 0xff00u) | ((x << 8u) & 0xff0000u) | (x << 24u);
}

// A finite f64 from its words (low, high): exponent not all ones.
fn finite(high: u32) -> bool {
    return (high & 0x7ff00000u) != 0x7ff00000u;
}

// A subnormal f64: exponent zero, mantissa not.
fn subnormal(low: u32, high: u32) -> bool {
    return (high & 0x7ff00000u) == 0u && ((high & 0x000fffffu) | low) != 0u;
}

// Zero of either sign.
fn zero(low: u32, high: u32) -> bool {
    return ((high & 0x7fffffffu) | low) == 0u;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn settle_heads(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let run = invocation(wg, li);
    let hours = sp.hours;
    if !is_run(run) {
        return;
    }
    var prev: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        prev[i] = starts[run * 8u + i];
    }
    var flag = 0u;
    for (var hour = 0u; hour < hours; hour++) {
        let item = run * hours + hour;
        let v = 2u * SETTLED * item;
        let p_lo = settled_words[v];
        let p_hi = settled_words[v + 1u];
        let x_lo = settled_words[v + 2u];
        let x_hi = settled_words[v + 3u];
        let c_lo = settled_words[v + 4u];
        let c_hi = settled_words[v + 5u];
        if settled_words[v + 7u] != 0u {
            flag = 1u;
        }
        // Where a device may flush subnormals to zero, its product could differ from the
        // host's: a subnormal factor or product, or a zero product of non-zero factors.
        let flushed = subnormal(p_lo, p_hi) || subnormal(x_lo, x_hi) || subnormal(c_lo, c_hi)
            || (zero(c_lo, c_hi) && !zero(p_lo, p_hi) && !zero(x_lo, x_hi));
        if !(finite(p_hi) && finite(x_hi) && finite(c_hi)) || flushed {
            flag = 1u;
        }
        // `exchange < 0`: the sign bit of a non-zero (finite) exchange.
        let negative = (x_hi & 0x80000000u) != 0u && ((x_hi & 0x7fffffffu) | x_lo) != 0u;
        var seller = AGENT_SMART_GRID;
        var buyer = AGENT_MICROGRID;
        if negative {
            seller = AGENT_MICROGRID;
            buyer = AGENT_SMART_GRID;
        }
        // mw = |exchange|: the sign bit cleared.
        let m_hi = x_hi & 0x7fffffffu;
        // The 38 settlement bytes, little-endian fields, as 10 words of 4 bytes from byte
        // 0 (the last two hold 2 bytes): v v | hour | seller | buyer | mw | price | cost.
        // Word j of the message (after h_k's 8) holds bytes 4j..4j+3; each field starts 2
        // bytes into a word, so a field's LE word x spans (x << 16) and (x >> 16).
        let head = (SETTLEMENT_VERSION) | (SETTLEMENT_TAG << 8u);
        var le: array<u32, 10>;
        le[0] = head | (hour << 16u);
        le[1] = (hour >> 16u) | (seller << 16u);
        le[2] = (seller >> 16u) | (buyer << 16u);
        le[3] = (buyer >> 16u) | (x_lo << 16u);
        le[4] = (x_lo >> 16u) | (m_hi << 16u);
        le[5] = (m_hi >> 16u) | (p_lo << 16u);
        le[6] = (p_lo >> 16u) | (p_hi << 16u);
        le[7] = (p_hi >> 16u) | (c_lo << 16u);
        le[8] = (c_lo >> 16u) | (c_hi << 16u);
        le[9] = c_hi >> 16u;
        // Block 1: h_k (8 words) and settlement bytes 0..32; block 2: bytes 32..38, the
        // padding's 0x80, zeros and the length, 70 bytes = 560 bits.
        for (var i = 0u; i < 8u; i++) {
            w[i] = prev[i];
            w[8u + i] = swap(le[i]);
        }
        for (var i = 0u; i < 8u; i++) {
            state[i] = IV[i];
        }
        compress();
        w[0] = swap(le[8]);
        w[1] = swap(le[9]) | 0x8000u;
        for (var i = 2u; i < 15u; i++) {
            w[i] = 0u;
        }
        w[15] = 560u;
        compress();
        for (var i = 0u; i < 8u; i++) {
            prev[i] = state[i];
        }
    }
    // Lavapipe ends every loop of a group of invocations once their iterations reach
    // 65535 together (see `loops_cut` in rci.wgsl); a run's chain takes about 6 500. A
    // probe of `loop_probe` trips that ran fewer says the chain was cut short.
    var trips = 0u;
    for (var i = 0u; i < sp.loop_probe; i++) {
        trips += 1u;
    }
    if trips != sp.loop_probe {
        flag = 2u;
    }
    for (var i = 0u; i < 8u; i++) {
        heads[run * 9u + i] = prev[i];
    }
    heads[run * 9u + 8u] = flag;
}
