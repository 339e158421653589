//! Criterion benchmark of one batch of 1000 runs on the CPU backend and, when an adapter
//! exists, the GPU f32 kernel.

use criterion::{Criterion, criterion_group, criterion_main};
use p2pmarket::engine::bench::bench_runs;
use p2pmarket::engine::{Batch, GpuContext, Precision, cpu};
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

criterion_group! {
    name = benches;
    // Criterion's own plots need system fonts this crate's plotters build does not have.
    config = Criterion::default().without_plots();
    targets = engine
}
criterion_main!(benches);
