//! Criterion benchmarks of the batch engine:
//! - one batch of 1000 runs on the CPU backend and, when an adapter exists, the GPU f32
//!   kernel;
//! - the GPU host's own work per chunk (no GPU needed): packing the runs' settings for
//!   upload and unpacking the (run, hour) records read back (in parallel, and on one
//!   thread for comparison). On a fast GPU this host work, not the kernel, may bound the
//!   runs per second.

use std::hint::black_box;

use bytemuck::Zeroable;
use criterion::{Criterion, criterion_group, criterion_main};
use p2pmarket::engine::bench::bench_runs;
use p2pmarket::engine::gpu::{DEFAULT_RUNS_PER_CHUNK, HourOut32, Layout, Layout32, unpack_records};
use p2pmarket::engine::{Batch, GpuContext, HourRecord, Precision, cpu};
use p2pmarket::market::Market;
use p2pmarket::scenario::Scenario;

fn engine(c: &mut Criterion) {
    let market = Market::from_scenario(&Scenario::default()).expect("default market");
    let batch = Batch::from_market(&market, &bench_runs(&market, 1000)).expect("batch");
    let mut group = c.benchmark_group("engine_1000_runs");
    group.sample_size(10);
    group.bench_function("cpu", |b| b.iter(|| cpu::run_cpu(&batch).expect("cpu run")));
    match GpuContext::new(None) {
        Ok(ctx) => {
            let name = format!("gpu_f32 ({})", ctx.info().name);
            group.bench_function(name, |b| {
                b.iter(|| ctx.run(&batch, Precision::F32).expect("gpu run"))
            });
        }
        Err(e) => eprintln!("SKIPPED gpu_f32: {e}"),
    }
    group.finish();
}

fn host_per_chunk(c: &mut Criterion) {
    let market = Market::from_scenario(&Scenario::default()).expect("default market");
    let runs = DEFAULT_RUNS_PER_CHUNK;
    let batch = Batch::from_market(&market, &bench_runs(&market, runs)).expect("batch");
    let outs = vec![HourOut32::zeroed(); runs * batch.hours()];
    let mut group = c.benchmark_group(format!("gpu_host_per_chunk_{runs}_runs"));
    group.sample_size(20);
    group.bench_function("pack_runs_f32", |b| {
        b.iter(|| {
            (0..runs)
                .map(|r| Layout32::run(black_box(&batch), r, u32::MAX, u32::MAX))
                .collect::<Vec<_>>()
        })
    });
    // What the engine does: one host buffer, reused for every chunk, filled in parallel.
    let mut reused: Vec<HourRecord> = Vec::with_capacity(outs.len());
    group.bench_function("unpack_records_f32", |b| {
        b.iter(|| unpack_records::<Layout32>(black_box(&outs), &mut reused))
    });
    // The same on one thread, as before the parallel unpacking.
    group.bench_function("unpack_records_f32_one_thread", |b| {
        b.iter(|| {
            reused.clear();
            reused.extend(black_box(&outs).iter().map(Layout32::record));
        })
    });
    // What it avoids: a fresh ~38 MB buffer per chunk, paid in page faults.
    group.bench_function("unpack_records_f32_fresh_buffer", |b| {
        b.iter(|| {
            black_box(&outs)
                .iter()
                .map(Layout32::record)
                .collect::<Vec<HourRecord>>()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Criterion's own plots need system fonts this crate's plotters build does not have.
    config = Criterion::default().without_plots();
    targets = engine, host_per_chunk
}
criterion_main!(benches);
