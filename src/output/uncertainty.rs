//! Writing an uncertainty study (`p2pmarket uncertainty`): `statistics.parquet`,
//! `study.json`, `report.md`, per-hour band figures and the effective `scenario.toml`.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::microgrid::HOURS;
use crate::output::parquet::Sink;
use crate::output::plots::{Band, write_band_plot};
use crate::scenario::Scenario;
use crate::uncertainty::study::{QUANTILES, QUANTITIES, StatRow, StudyResult};

/// The columns of `statistics.parquet`, one row per method x quantity x hour (hour null
/// for the whole day):
///
/// | column | type | unit / meaning |
/// |---|---|---|
/// | `method` | utf8 | `ut_paper`, `ut_julier`, `ut_merwe`, `mc`, `qmc_sobol`, `lhs` |
/// | `quantity` | utf8 | see [`QUANTITIES`]: MW, $/MWh or $/h (day: MWh, mean $/MWh, $) |
/// | `hour` | uint32, null | 0..23, null for the day |
/// | `runs` | uint64 | runs the statistic is over |
/// | `mean` | float64 | the quantity's unit |
/// | `std` | float64, null | null where a UT's weighted variance is negative |
/// | `q05` .. `q95` | float64, null | quantiles (sampling methods only) |
/// | `ci95_lo`, `ci95_hi` | float64, null | 95 % CI of the mean (sampling methods only) |
pub fn statistics_schema() -> Schema {
    let mut fields = vec![
        Field::new("method", DataType::Utf8, false),
        Field::new("quantity", DataType::Utf8, false),
        Field::new("hour", DataType::UInt32, true),
        Field::new("runs", DataType::UInt64, false),
        Field::new("mean", DataType::Float64, false),
        Field::new("std", DataType::Float64, true),
    ];
    for name in quantile_names() {
        fields.push(Field::new(name, DataType::Float64, true));
    }
    fields.push(Field::new("ci95_lo", DataType::Float64, true));
    fields.push(Field::new("ci95_hi", DataType::Float64, true));
    Schema::new(fields)
}

fn quantile_names() -> Vec<String> {
    QUANTILES
        .iter()
        .map(|q| format!("q{:02}", (q * 100.0).round() as u32))
        .collect()
}

/// The statistics of a study as one Arrow table ([`statistics_schema`]).
pub fn statistics_table(result: &StudyResult) -> Result<RecordBatch> {
    let rows = &result.rows;
    let f = |g: &dyn Fn(&StatRow) -> Option<f64>| -> ArrayRef {
        Arc::new(rows.iter().map(g).collect::<Float64Array>())
    };
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| Some(r.method)).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.quantity))
                .collect::<StringArray>(),
        ),
        Arc::new(rows.iter().map(|r| r.hour).collect::<UInt32Array>()),
        Arc::new(rows.iter().map(|r| Some(r.runs)).collect::<UInt64Array>()),
        f(&|r| Some(r.mean)),
        f(&|r| r.std),
    ];
    for k in 0..QUANTILES.len() {
        columns.push(f(&|r| r.quantiles.map(|q| q[k])));
    }
    columns.push(f(&|r| r.ci95.map(|c| c.0)));
    columns.push(f(&|r| r.ci95.map(|c| c.1)));
    RecordBatch::try_new(Arc::new(statistics_schema()), columns).map_err(|e| Error::Output {
        context: "statistics table".into(),
        message: e.to_string(),
    })
}

/// The per-hour row of a method and quantity.
fn row<'a>(
    result: &'a StudyResult,
    method: &str,
    quantity: &str,
    hour: Option<u32>,
) -> Option<&'a StatRow> {
    result
        .rows
        .iter()
        .find(|r| r.method == method && r.quantity == quantity && r.hour == hour)
}

/// The methods present, in the order they ran.
fn methods(result: &StudyResult) -> Vec<&'static str> {
    result.methods.iter().map(|m| m.method).collect()
}

/// `report.md`: what ran, and each UT form against the sampling reference (MC when it
/// ran, else the first sampling method) per quantity: the largest error over the hours of
/// the mean (relative to the reference's mean, and in units of its CI half-width) and of
/// the standard deviation (relative).
pub fn report_markdown(result: &StudyResult, samples: u64) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Uncertainty study\n");
    let _ = writeln!(
        s,
        "| method | runs | diverged runs | unconverged hours | load outside table | clipped inputs | host s | engine s | reduce s | device |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for m in &result.methods {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} |",
            m.method,
            m.runs,
            m.diverged_runs,
            m.unconverged_hours,
            m.sg_load_out_of_range_hours,
            m.clipped_inputs,
            m.host_s,
            m.engine_s,
            m.reduce_s,
            m.adapter
        );
    }
    match (
        result.table_levels,
        result.table_range,
        result.table_export_error_mw,
    ) {
        (0, ..) => {
            let _ = writeln!(s, "\nNo system-load uncertainty: no load table was built.");
        }
        (levels, Some((lo, hi)), Some(err)) => {
            let _ = writeln!(
                s,
                "\nLoad table: {levels} levels (all hours together) over load scales [{lo:.4}, {hi:.4}], \
                 built in {:.2} s; export error bound of the table: {err:.2e} MW.",
                result.table_s
            );
        }
        _ => {}
    }
    let names = methods(result);
    let reference = names
        .iter()
        .copied()
        .find(|m| *m == "mc")
        .or_else(|| names.iter().copied().find(|m| !m.starts_with("ut_")));
    let Some(reference) = reference else {
        let _ = writeln!(s, "\nNo sampling method ran, so the UT is not compared.");
        return s;
    };
    let _ = writeln!(
        s,
        "\n## UT against {reference} ({samples} samples)\n\nLargest over the 24 hours: \
         |mean error| relative to the {reference} mean (floor 1 unit), the same in units of \
         the {reference} 95 % CI half-width, and |std error| relative to the {reference} std \
         (hours with a std below 1e-9 left out). The UT gives no quantiles and no tail \
         probabilities such as P(price > x): those come from the sampling methods only.\n"
    );
    let _ = writeln!(
        s,
        "| method | quantity | mean rel. error | mean error / CI half-width | std rel. error |\n|---|---|---|---|---|"
    );
    for ut in names.iter().filter(|m| m.starts_with("ut_")) {
        for q in QUANTITIES {
            let (mut mean_rel, mut mean_ci, mut std_rel) = (0.0f64, 0.0f64, 0.0f64);
            for h in 0..HOURS as u32 {
                let (Some(u), Some(r)) = (
                    row(result, ut, q, Some(h)),
                    row(result, reference, q, Some(h)),
                ) else {
                    continue;
                };
                let d = (u.mean - r.mean).abs();
                mean_rel = mean_rel.max(d / r.mean.abs().max(1.0));
                if let Some((lo, hi)) = r.ci95
                    && hi > lo
                {
                    mean_ci = mean_ci.max(d / (0.5 * (hi - lo)));
                }
                if let (Some(us), Some(rs)) = (u.std, r.std)
                    && rs > 1e-9
                {
                    std_rel = std_rel.max((us - rs).abs() / rs);
                }
            }
            let _ = writeln!(
                s,
                "| {ut} | {q} | {:.3e} | {:.2} | {:.3e} |",
                mean_rel, mean_ci, std_rel
            );
        }
    }
    s
}

/// Writes a study into `sink` and returns the file names written.
pub fn write_study(
    sink: &mut dyn Sink,
    scenario: &Scenario,
    result: &StudyResult,
    manifest: serde_json::Value,
    samples: u64,
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    sink.write_table("statistics", &statistics_table(result)?)?;
    names.push("statistics.parquet".to_string());
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Output {
        context: "study.json".into(),
        message: e.to_string(),
    })?;
    sink.write_bytes("study.json", &json)?;
    names.push("study.json".to_string());
    sink.write_bytes("report.md", report_markdown(result, samples).as_bytes())?;
    names.push("report.md".to_string());
    if scenario.output.plots {
        for (quantity, label) in [
            ("exchange_mw", "exchange, MW (smart grid -> microgrid)"),
            ("price", "price, $/MWh"),
            ("total_cost", "total cost, $/h"),
            ("wind_mw", "dispatched wind, MW"),
            ("pv_mw", "dispatched PV, MW"),
            ("tidal_mw", "dispatched tidal, MW"),
        ] {
            let bands: Vec<Band> = methods(result)
                .into_iter()
                .map(|m| Band {
                    label: format!("{m}: mean +- 2 std"),
                    points: (0..HOURS as u32)
                        .filter_map(|h| row(result, m, quantity, Some(h)))
                        .map(|r| {
                            let sd = r.std.unwrap_or(f64::NAN);
                            (
                                f64::from(r.hour.unwrap_or(0)),
                                r.mean,
                                r.mean - 2.0 * sd,
                                r.mean + 2.0 * sd,
                            )
                        })
                        .collect(),
                })
                .collect();
            names.extend(write_band_plot(
                sink,
                &format!("bands_{quantity}"),
                &format!("{label} under uncertainty"),
                "hour",
                label,
                &bands,
            )?);
        }
    }
    let toml = toml::to_string_pretty(scenario).map_err(|e| Error::Output {
        context: "scenario.toml".into(),
        message: e.to_string(),
    })?;
    sink.write_bytes("scenario.toml", toml.as_bytes())?;
    names.push("scenario.toml".to_string());
    Ok(names)
}
