//! Benchmarks of the market's building blocks on the default scenario: one full 24-h RCI
//! run over prebuilt offer curves, the smart-grid offer curve of one hour, and each
//! centralized solve (one hourly reference, the 24-h co-optimization).

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

use p2pmarket::central;
use p2pmarket::market::Market;
use p2pmarket::microgrid::HOURS;
use p2pmarket::scenario::Scenario;

fn market_benches(c: &mut Criterion) {
    let market = Market::from_scenario(&Scenario::default()).expect("default scenario is valid");
    let curves: Vec<_> = (0..HOURS)
        .map(|h| market.curves(h).expect("default curves build"))
        .collect();
    c.bench_function("rci_24h_run", |b| {
        b.iter(|| {
            for hc in &curves {
                black_box(market.negotiate(hc, false));
            }
        })
    });
    c.bench_function("smart_grid_offer_curve_one_hour", |b| {
        b.iter(|| black_box(market.curves(17).expect("curve")))
    });
    c.bench_function("hourly_reference_one_hour", |b| {
        b.iter(|| black_box(central::hourly_reference(&market, 17).expect("solve")))
    });
    c.bench_function("horizon_reference_24h", |b| {
        b.iter(|| black_box(central::horizon_reference(&market).expect("solve")))
    });
}

criterion_group! {
    name = benches;
    // Criterion's own plots need system fonts this crate's plotters build does not have.
    config = Criterion::default().sample_size(20).without_plots();
    targets = market_benches
}
criterion_main!(benches);
