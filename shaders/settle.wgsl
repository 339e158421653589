// Settlement heads of a chunk's runs on the device (f64 kernel only), so that a sweep that
// writes only the `runs` table reads back no hour record: the SHA-256 chain of
// `ledger::chain`, over the records `rci.wgsl`'s `main` left in the device's memory.
//
// Two passes, after `reduce_runs`:
// - `settle_costs`, one invocation per (run, hour): the settlement's cost `|exchange| *
//   price`, an IEEE-754 double product as on the host, stored to `costs`;
// - `settle_heads`, one invocation per run: from the host's `h_0 = SHA256(domain || run)`,
//   `h_{k+1} = SHA256(h_k || settlement bytes of hour k)` for every hour, written to
//   `heads`, with a flag the host turns into an error: 1 when a price, exchange or cost
//   is not finite or a subnormal is involved (where a device may flush to zero), 2 when
//   the driver cut the pass's loops short.
// The second pass reads the records and the costs as 32-bit words: WGSL has no bitcast
// of an f64, and a buffer may be bound read-only under two types.
//
// Injected by the host (`engine::gpu::settle_source`): RECORD_WORDS (u32 words per hour
// record), PRICE_WORD and EXCHANGE_WORD (the low words of the two f64 fields),
// SETTLEMENT_VERSION and SETTLEMENT_TAG (the encoding's first two bytes), AGENT_MICROGRID
// and AGENT_SMART_GRID (the agent indices of `ledger::chain`), and WORKGROUP_SIZE.

struct SettleParams {
    items: u32,
    hours: u32,
    groups_x: u32,
    // Always 2 (`engine::gpu::LOOP_PROBE`): the trip count of the loop-cut probe.
    loop_probe: u32,
}

@group(0) @binding(0) var<uniform> sp: SettleParams;
@group(0) @binding(1) var<storage, read> records: array<f64>;
@group(0) @binding(2) var<storage, read_write> costs: array<f64>;
@group(0) @binding(3) var<storage, read> record_words: array<u32>;
@group(0) @binding(4) var<storage, read> cost_words: array<u32>;
@group(0) @binding(5) var<storage, read> starts: array<u32>;
@group(0) @binding(6) var<storage, read_write> heads: array<u32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn settle_costs(
    @builtin(workgroup_id) wg: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
) {
    let item = (wg.y * sp.groups_x + wg.x) * WORKGROUP_SIZE + li;
    if item >= sp.items {
        return;
    }
    let base = item * (RECORD_WORDS / 2u);
    let price = records[base + PRICE_WORD / 2u];
    let exchange = records[base + EXCHANGE_WORD / 2u];
    costs[item] = abs(exchange) * price;
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
    let run = (wg.y * sp.groups_x + wg.x) * WORKGROUP_SIZE + li;
    let hours = sp.hours;
    if hours == 0u || run >= sp.items / hours {
        return;
    }
    var prev: array<u32, 8>;
    for (var i = 0u; i < 8u; i++) {
        prev[i] = starts[run * 8u + i];
    }
    var flag = 0u;
    for (var hour = 0u; hour < hours; hour++) {
        let item = run * hours + hour;
        let r = item * RECORD_WORDS;
        let p_lo = record_words[r + PRICE_WORD];
        let p_hi = record_words[r + PRICE_WORD + 1u];
        let x_lo = record_words[r + EXCHANGE_WORD];
        let x_hi = record_words[r + EXCHANGE_WORD + 1u];
        let c_lo = cost_words[2u * item];
        let c_hi = cost_words[2u * item + 1u];
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
