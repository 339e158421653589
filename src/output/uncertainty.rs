//! Writing an uncertainty study (`p2pmarket uncertainty`): `statistics.parquet`,
//! `study.json`, `report.md`, per-hour band figures and the effective `scenario.toml`.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};
use crate::microgrid::HOURS;
use crate::output::parquet::Sink;
use crate::output::plots::{FigureOptions, Layer, Panel, write_panels};
use crate::scenario::Scenario;
use crate::uncertainty::study::{
    HISTOGRAM_QUANTITIES, HistogramRow, QUANTILES, QUANTITIES, StatRow, StudyResult, TailRow,
};

/// The columns of `statistics.parquet`, one row per method x quantity x hour (hour null
/// for the whole day):
///
/// | column | type | unit / meaning |
/// |---|---|---|
/// | `method` | utf8 | `ut_paper`, `ut_julier`, `ut_merwe`, `mc`, `qmc_sobol`, `lhs` |
/// | `quantity` | utf8 | see [`QUANTITIES`]: MW, $/MWh or $/h (day: MWh, mean $/MWh, $; `clearing_error_mw`: the largest \|error\|, MW) |
/// | `hour` | int64, null | 0..23, null for the day |
/// | `runs` | int64 | runs the statistic is over |
/// | `mean` | float64 | the quantity's unit |
/// | `std` | float64, null | null where a UT's weighted variance is negative |
/// | `q05` .. `q95` | float64, null | quantiles (sampling methods only) |
/// | `ci95_lo`, `ci95_hi` | float64, null | 95 % CI of the mean (sampling methods only) |
pub fn statistics_schema() -> Schema {
    let mut fields = vec![
        Field::new("method", DataType::Utf8, false),
        Field::new("quantity", DataType::Utf8, false),
        Field::new("hour", DataType::Int64, true),
        Field::new("runs", DataType::Int64, false),
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
        Arc::new(
            rows.iter()
                .map(|r| r.hour.map(i64::from))
                .collect::<Int64Array>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.runs as i64))
                .collect::<Int64Array>(),
        ),
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
        "\n## UT against {reference} ({samples} samples)\n\nLargest over the 24 hours of the \
         |error| of the UT's mean and standard deviation against {reference}'s: in the \
         quantity's unit, relative to {reference}'s value (mean: floor 1 unit), and in units \
         of the half-width of {reference}'s 95 % interval of that statistic (the std's from \
         the sample's fourth moment). A ratio above 1 is an error the sampling noise does \
         not explain. The std's relative error and both ratios leave out the hours where \
         {reference}'s std is at most {NOISE_STD:e} in the quantity's unit, whose spread is \
         rounding (`clearing_error_mw`'s, a numerical check of the consensus, always is; \
         `-`: no hour left).\n"
    );
    let _ = writeln!(
        s,
        "| method | quantity | mean abs. | mean rel. | mean / CI | std abs. | std rel. | std / CI |\n|---|---|---|---|---|---|---|---|"
    );
    for ut in names.iter().filter(|m| m.starts_with("ut_")) {
        for q in QUANTITIES {
            let e = ut_errors(result, ut, reference, q);
            let _ = writeln!(
                s,
                "| {ut} | {q} | {:.3e} | {:.3e} | {} | {} | {} | {} |",
                e.mean_abs,
                e.mean_rel,
                ratio(e.mean_ci),
                e.std_abs.map_or("-".into(), |d| format!("{d:.3e}")),
                e.std_rel.map_or("-".into(), |r| format!("{r:.3e}")),
                ratio(e.std_ci)
            );
        }
    }
    if !result.tails.is_empty() {
        let _ = writeln!(
            s,
            "\n## Price tails (sampling methods only)\n\nP(price > x), with Wilson's 95 % \
             interval, for the day's mean price and the peak hour {} (all hours and \
             thresholds in `tails.parquet`). x is the forecast day's price times 1 + r, or \
             a configured `price_thresholds` entry. The UT cannot give these: it propagates a \
             mean and a covariance through 2c+1 weighted points, not a distribution.\n",
            result.histogram_hours[0]
        );
        let _ = writeln!(
            s,
            "| method | hour | x, $/MWh | r | P(price > x) | 95 % interval |\n|---|---|---|---|---|---|"
        );
        for t in result
            .tails
            .iter()
            .filter(|t| t.hour.is_none() || t.hour == Some(result.histogram_hours[0]))
        {
            let _ = writeln!(
                s,
                "| {} | {} | {:.2} | {} | {:.4} | [{:.4}, {:.4}] |",
                t.method,
                t.hour.map_or("day".to_string(), |h| h.to_string()),
                t.threshold,
                t.relative.map_or("-".to_string(), |r| format!("{r}")),
                t.probability,
                t.ci95.0,
                t.ci95.1
            );
        }
    }
    s
}

/// A ratio of [`UtErrors`] in the report: two decimals, `-` for none.
fn ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}"))
}

/// A reference std at or below this, in the quantity's unit, is rounding, not sampling
/// spread: [`ut_errors`] leaves such hours out of its relative and interval ratios.
/// `clearing_error_mw`, the consensus exchange minus the exact clearing (about 1e-11 MW),
/// always is; the market's quantities vary by far more wherever they vary at all.
pub const NOISE_STD: f64 = 1e-9;

/// The UT's largest errors over the hours against a sampling reference for one quantity
/// (see [`report_markdown`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct UtErrors {
    /// Largest |mean error|, the quantity's unit.
    pub mean_abs: f64,
    /// Largest |mean error| / max(|reference mean|, 1).
    pub mean_rel: f64,
    /// Largest |mean error| / the reference mean's 95 % CI half-width, over the hours
    /// whose reference std is above [`NOISE_STD`]; `None` when there is none.
    pub mean_ci: Option<f64>,
    /// Largest |std error|, the quantity's unit, over the hours where both the UT and the
    /// reference have a std; `None` when there is none (e.g. a 1-sample reference).
    pub std_abs: Option<f64>,
    /// Largest |std error| / reference std, over the hours whose reference std is above
    /// [`NOISE_STD`]; `None` when there is none.
    pub std_rel: Option<f64>,
    /// Largest |std error| / the reference std's 95 % half-width, over the same hours.
    pub std_ci: Option<f64>,
}

/// [`UtErrors`] of `ut` against `reference` for `quantity`.
pub fn ut_errors(result: &StudyResult, ut: &str, reference: &str, quantity: &str) -> UtErrors {
    let mut e = UtErrors::default();
    for h in 0..HOURS as u32 {
        let (Some(u), Some(r)) = (
            row(result, ut, quantity, Some(h)),
            row(result, reference, quantity, Some(h)),
        ) else {
            continue;
        };
        let most = |m: &mut Option<f64>, x: f64| *m = Some(m.map_or(x, |m| m.max(x)));
        // The reference varies by more than rounding at this hour.
        let spread = r.std.is_some_and(|rs| rs > NOISE_STD);
        let d = (u.mean - r.mean).abs();
        e.mean_abs = e.mean_abs.max(d);
        e.mean_rel = e.mean_rel.max(d / r.mean.abs().max(1.0));
        if let Some((lo, hi)) = r.ci95
            && hi > lo
            && spread
        {
            most(&mut e.mean_ci, d / (0.5 * (hi - lo)));
        }
        if let (Some(us), Some(rs)) = (u.std, r.std) {
            let d = (us - rs).abs();
            most(&mut e.std_abs, d);
            if spread {
                most(&mut e.std_rel, d / rs);
                if let Some(w) = r.std_half_width.filter(|&w| w > 0.0) {
                    most(&mut e.std_ci, d / w);
                }
            }
        }
    }
    e
}

/// The columns of `tails.parquet`, one row per sampling method x hour x threshold:
///
/// | column | type | unit / meaning |
/// |---|---|---|
/// | `method` | utf8 | `mc`, `qmc_sobol`, `lhs` |
/// | `hour` | int64, null | 0..23, null for the day's mean price |
/// | `threshold` | float64 | x, $/MWh |
/// | `relative` | float64, null | r when x = (1 + r) x the forecast day's price; null for a configured threshold |
/// | `runs` | int64 | samples |
/// | `probability` | float64 | P(price > x), the fraction of samples |
/// | `ci95_lo`, `ci95_hi` | float64 | Wilson's 95 % interval |
pub fn tails_table(result: &StudyResult) -> Result<RecordBatch> {
    let t = &result.tails;
    let f = |g: &dyn Fn(&TailRow) -> Option<f64>| -> ArrayRef {
        Arc::new(t.iter().map(g).collect::<Float64Array>())
    };
    let schema = Schema::new(vec![
        Field::new("method", DataType::Utf8, false),
        Field::new("hour", DataType::Int64, true),
        Field::new("threshold", DataType::Float64, false),
        Field::new("relative", DataType::Float64, true),
        Field::new("runs", DataType::Int64, false),
        Field::new("probability", DataType::Float64, false),
        Field::new("ci95_lo", DataType::Float64, false),
        Field::new("ci95_hi", DataType::Float64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(t.iter().map(|r| Some(r.method)).collect::<StringArray>()),
        Arc::new(
            t.iter()
                .map(|r| r.hour.map(i64::from))
                .collect::<Int64Array>(),
        ),
        f(&|r| Some(r.threshold)),
        f(&|r| r.relative),
        Arc::new(
            t.iter()
                .map(|r| Some(r.runs as i64))
                .collect::<Int64Array>(),
        ),
        f(&|r| Some(r.probability)),
        f(&|r| Some(r.ci95.0)),
        f(&|r| Some(r.ci95.1)),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| Error::Output {
        context: "tails table".into(),
        message: e.to_string(),
    })
}

/// Histogram bins written and drawn: the accumulator's bins merged in groups.
const COARSE_BINS: usize = 128;

/// A histogram's bins merged into `COARSE_BINS` (exact: each coarse bin is the sum of
/// whole fine bins), as (lower, upper, count), with the underflow as [min, lo) and the
/// overflow as (hi, max] when they hold samples. Each bin counts the samples in
/// [lower, upper), but the last bin of [lo, hi] is closed at hi (as the accumulator's
/// last fine bin) and the overflow row holds the samples above hi, the largest at its
/// upper end.
pub fn coarse_bins(h: &HistogramRow) -> Vec<(f64, f64, u64)> {
    let fine = &h.counts[1..h.counts.len() - 1];
    let group = fine.len().div_ceil(COARSE_BINS).max(1);
    let width = (h.hi - h.lo) / fine.len() as f64;
    let mut out = Vec::new();
    if h.counts[0] > 0 {
        out.push((h.min, h.lo, h.counts[0]));
    }
    for (k, chunk) in fine.chunks(group).enumerate() {
        let a = h.lo + (k * group) as f64 * width;
        let b = h.lo + (k * group + chunk.len()) as f64 * width;
        out.push((a, b, chunk.iter().sum()));
    }
    if let Some(&over) = h.counts.last()
        && over > 0
    {
        out.push((h.hi, h.max, over));
    }
    out
}

/// The columns of `histograms.parquet`, one row per bin (see [`coarse_bins`]):
/// `method`, `quantity`, `hour` (null: the day), `bin_lo`, `bin_hi` (the quantity's unit)
/// and `count` (samples in [bin_lo, bin_hi), except in the range's last bin, closed at its
/// bin_hi, and in the overflow row after it, (bin_lo, bin_hi] with bin_hi the largest
/// sample; the underflow row starts at the smallest sample; the counts of a histogram sum
/// to its runs).
pub fn histograms_table(result: &StudyResult) -> Result<RecordBatch> {
    let mut rows = Vec::new();
    for h in &result.histograms {
        for (a, b, c) in coarse_bins(h) {
            rows.push((h.method, h.quantity, h.hour, a, b, c));
        }
    }
    let schema = Schema::new(vec![
        Field::new("method", DataType::Utf8, false),
        Field::new("quantity", DataType::Utf8, false),
        Field::new("hour", DataType::Int64, true),
        Field::new("bin_lo", DataType::Float64, false),
        Field::new("bin_hi", DataType::Float64, false),
        Field::new("count", DataType::Int64, false),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(rows.iter().map(|r| Some(r.0)).collect::<StringArray>()),
        Arc::new(rows.iter().map(|r| Some(r.1)).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|r| r.2.map(i64::from))
                .collect::<Int64Array>(),
        ),
        Arc::new(rows.iter().map(|r| Some(r.3)).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| Some(r.4)).collect::<Float64Array>()),
        Arc::new(
            rows.iter()
                .map(|r| Some(r.5 as i64))
                .collect::<Int64Array>(),
        ),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).map_err(|e| Error::Output {
        context: "histograms table".into(),
        message: e.to_string(),
    })
}

/// Writes a study into `sink` and returns the file names written.
pub fn write_study(
    sink: &mut dyn Sink,
    scenario: &Scenario,
    result: &StudyResult,
    manifest: serde_json::Value,
    samples: u64,
    figures: &FigureOptions,
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
    if !result.tails.is_empty() {
        sink.write_table("tails", &tails_table(result)?)?;
        names.push("tails.parquet".to_string());
    }
    if !result.histograms.is_empty() {
        sink.write_table("histograms", &histograms_table(result)?)?;
        names.push("histograms.parquet".to_string());
    }
    if scenario.output.plots {
        names.extend(write_figures(sink, result, figures)?);
    }
    names.push(super::write_scenario_toml(sink, scenario)?);
    Ok(names)
}

/// Each quantity's label and unit in the figures.
const LABELS: [(&str, &str); 8] = [
    ("exchange_mw", "exchange smart grid -> microgrid, MW"),
    ("price", "price, $/MWh"),
    ("sg_cost", "smart grid's cost, $/h"),
    ("mg_cost", "microgrid's cost, $/h"),
    ("total_cost", "total cost, $/h"),
    ("wind_mw", "dispatched wind, MW"),
    ("pv_mw", "dispatched PV, MW"),
    ("tidal_mw", "dispatched tidal, MW"),
];

fn label(quantity: &str) -> &'static str {
    LABELS
        .iter()
        .find(|(q, _)| *q == quantity)
        .map_or("value", |(_, l)| l)
}

/// The sampling method the figures show: MC when it ran, else the first sampling method.
fn reference(result: &StudyResult) -> Option<&'static str> {
    let names = methods(result);
    names
        .iter()
        .copied()
        .find(|m| *m == "mc")
        .or_else(|| names.iter().copied().find(|m| !m.starts_with("ut_")))
}

/// Per-hour points of `method`'s `quantity`, by `f`.
fn hourly<T>(
    result: &StudyResult,
    method: &str,
    quantity: &str,
    f: impl Fn(&StatRow) -> Option<T>,
) -> Vec<(f64, T)> {
    (0..HOURS as u32)
        .filter_map(|h| {
            row(result, method, quantity, Some(h)).and_then(|r| Some((f64::from(h), f(r)?)))
        })
        .collect()
}

fn line(label: String, points: Vec<(f64, f64)>, colour: usize, width: u32) -> Layer {
    Layer::Line {
        label,
        points,
        colour,
        width,
    }
}

/// The forecast day's per-hour values of `quantity` as a line.
fn forecast_line(result: &StudyResult, quantity: &str) -> Layer {
    line(
        "forecast (deterministic)".into(),
        (0..HOURS as u32)
            .filter_map(|h| Some((f64::from(h), result.forecast(quantity, Some(h))?)))
            .collect(),
        4,
        3,
    )
}

/// `method`'s mean per hour and, as a band, its 5-95 % quantiles (a UT: mean +- 2 std).
fn stochastic_layers(
    result: &StudyResult,
    method: &str,
    quantity: &str,
    colour: usize,
) -> Vec<Layer> {
    let band = hourly(result, method, quantity, |r| match r.quantiles {
        Some(q) => Some((q[0], q[4])),
        None => r.std.map(|s| (r.mean - 2.0 * s, r.mean + 2.0 * s)),
    });
    let band_label = if method.starts_with("ut_") {
        format!("{method}: mean +- 2 std")
    } else {
        format!("{method}: 5-95 % quantiles")
    };
    vec![
        Layer::Band {
            label: band_label,
            points: band.into_iter().map(|(x, (a, b))| (x, a, b)).collect(),
            colour,
        },
        line(
            format!("{method}: mean"),
            hourly(result, method, quantity, |r| Some(r.mean)),
            colour,
            3,
        ),
    ]
}

/// A histogram's bars as fractions of its samples, trimmed to the bins between the
/// smallest and largest sample.
fn histogram_bars(h: &HistogramRow) -> Vec<(f64, f64, f64)> {
    let total: u64 = h.counts.iter().sum();
    coarse_bins(h)
        .into_iter()
        .filter(|&(a, b, _)| b >= h.min && a <= h.max)
        .map(|(a, b, c)| (a, b, c as f64 / total.max(1) as f64))
        .collect()
}

/// The study's figures:
/// - `bands_QUANTITY`: per hour, the mean (with the reference's 95 % CI) and the standard
///   deviation of each UT form against the sampling reference (MC when it ran);
/// - `deterministic_vs_stochastic`: the forecast day against the reference's mean and
///   5-95 % band for the exchange, wind, PV and tidal power (the paper's Fig. 18-22);
/// - `total_cost`: the total cost per hour and the distribution of the day's (Fig. 24);
/// - `histograms`: price, exchange and total cost at the peak and night hours.
fn write_figures(
    sink: &mut dyn Sink,
    result: &StudyResult,
    figures: &FigureOptions,
) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let reference = reference(result);
    let uts: Vec<&str> = methods(result)
        .into_iter()
        .filter(|m| m.starts_with("ut_"))
        .collect();
    for (quantity, label) in LABELS
        .iter()
        .filter(|(q, _)| !q.ends_with("_cost") || *q == "total_cost")
    {
        let (mut mean, mut std) = (Vec::new(), Vec::new());
        if let Some(r) = reference {
            mean.push(Layer::Band {
                label: format!("{r}: 95 % CI of the mean"),
                points: hourly(result, r, quantity, |x| x.ci95)
                    .into_iter()
                    .map(|(h, (a, b))| (h, a, b))
                    .collect(),
                colour: 0,
            });
            mean.push(line(
                r.to_string(),
                hourly(result, r, quantity, |x| Some(x.mean)),
                0,
                4,
            ));
            std.push(line(
                r.to_string(),
                hourly(result, r, quantity, |x| x.std),
                0,
                4,
            ));
        }
        for (k, ut) in uts.iter().enumerate() {
            mean.push(line(
                ut.to_string(),
                hourly(result, ut, quantity, |x| Some(x.mean)),
                k + 1,
                2,
            ));
            std.push(line(
                ut.to_string(),
                hourly(result, ut, quantity, |x| x.std),
                k + 1,
                2,
            ));
        }
        let panels = [
            Panel {
                title: "mean".into(),
                x_label: "hour".into(),
                y_label: label.to_string(),
                log_log: false,
                layers: mean,
            },
            Panel {
                title: "standard deviation".into(),
                x_label: "hour".into(),
                y_label: label.to_string(),
                log_log: false,
                layers: std,
            },
        ];
        names.extend(write_panels(
            sink,
            &format!("bands_{quantity}"),
            &format!(
                "{label}: the UT forms against {}",
                reference.unwrap_or("no sampling method")
            ),
            &panels,
            2,
            figures,
        )?);
    }
    let Some(r) = reference.or(uts.first().copied()) else {
        return Ok(names);
    };
    let panels: Vec<Panel> = ["exchange_mw", "wind_mw", "pv_mw", "tidal_mw"]
        .into_iter()
        .map(|q| {
            let mut layers = stochastic_layers(result, r, q, 0);
            layers.push(forecast_line(result, q));
            Panel {
                title: label(q).to_string(),
                x_label: "hour".into(),
                y_label: label(q).to_string(),
                log_log: false,
                layers,
            }
        })
        .collect();
    names.extend(write_panels(
        sink,
        "deterministic_vs_stochastic",
        &format!("forecast day against {r} (paper's Fig. 18-22)"),
        &panels,
        2,
        figures,
    )?);
    let mut cost = vec![{
        let mut layers = stochastic_layers(result, r, "total_cost", 0);
        layers.push(forecast_line(result, "total_cost"));
        Panel {
            title: "per hour".into(),
            x_label: "hour".into(),
            y_label: label("total_cost").to_string(),
            log_log: false,
            layers,
        }
    }];
    let markers = |quantity: &str, hour: Option<u32>| -> Vec<Layer> {
        let mut m = vec![Layer::Marker {
            label: "forecast".into(),
            x: result.forecast(quantity, hour).unwrap_or(f64::NAN),
            colour: 4,
        }];
        for (k, method) in std::iter::once(r).chain(uts.iter().copied()).enumerate() {
            if let Some(x) = row(result, method, quantity, hour) {
                m.push(Layer::Marker {
                    label: format!("{method}: mean"),
                    x: x.mean,
                    colour: k,
                });
            }
        }
        m
    };
    if let Some(h) = result
        .histograms
        .iter()
        .find(|h| h.method == r && h.quantity == "total_cost" && h.hour.is_none())
    {
        let mut layers = vec![Layer::Bars {
            label: format!("{r}: fraction of samples"),
            bars: histogram_bars(h),
            colour: 0,
        }];
        layers.extend(markers("total_cost", None));
        cost.push(Panel {
            title: "the day's total cost".into(),
            x_label: "total cost of the day, $".into(),
            y_label: "fraction of samples".into(),
            log_log: false,
            layers,
        });
    }
    names.extend(write_panels(
        sink,
        "total_cost",
        &format!("stochastic total cost, {r} (paper's Fig. 24)"),
        &cost,
        2,
        figures,
    )?);
    let panels: Vec<Panel> = HISTOGRAM_QUANTITIES
        .iter()
        .flat_map(|&q| result.histogram_hours.iter().map(move |&h| (q, h)))
        .filter_map(|(q, hour)| {
            let h = result
                .histograms
                .iter()
                .find(|x| x.method == r && x.quantity == q && x.hour == Some(hour))?;
            let mut layers = vec![Layer::Bars {
                label: format!("{r}: fraction of samples"),
                bars: histogram_bars(h),
                colour: 0,
            }];
            layers.extend(markers(q, Some(hour)));
            let when = if hour == result.histogram_hours[0] {
                "peak"
            } else {
                "night"
            };
            Some(Panel {
                title: format!("hour {hour} ({when})"),
                x_label: label(q).to_string(),
                y_label: "fraction of samples".into(),
                log_log: false,
                layers,
            })
        })
        .collect();
    if !panels.is_empty() {
        names.extend(write_panels(
            sink,
            "histograms",
            &format!("{r} histograms at the peak and night hours, UT means marked"),
            &panels,
            2,
            figures,
        )?);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::uncertainty::study::MethodReport;

    /// One hour's statistics row of a method.
    fn stat(
        method: &'static str,
        quantity: &'static str,
        hour: u32,
        mean: f64,
        std: f64,
        ci_half: f64,
        std_half: f64,
    ) -> StatRow {
        StatRow {
            method,
            quantity,
            hour: Some(hour),
            runs: 100,
            mean,
            std: Some(std),
            quantiles: None,
            ci95: (ci_half > 0.0).then_some((mean - ci_half, mean + ci_half)),
            std_half_width: (std_half > 0.0).then_some(std_half),
        }
    }

    fn method(method: &'static str) -> MethodReport {
        MethodReport {
            runs: 100,
            ..MethodReport::new(method)
        }
    }

    /// The UT's errors against MC by hand: the largest over the hours of the mean's and
    /// the std's errors, relative and in units of MC's interval; an hour whose MC spread
    /// is rounding (std at most `NOISE_STD`, as `clearing_error_mw` always has) counts in
    /// the absolute errors only, and a quantity with no other hour shows `-` in the report
    /// instead of a ratio of one rounding error to another.
    #[test]
    fn ut_errors_by_hand_and_rounding_left_out_of_the_ratios() {
        let rows = vec![
            stat("mc", "price", 0, 40.0, 2.0, 0.1, 0.05),
            stat("ut_paper", "price", 0, 40.3, 2.1, 0.0, 0.0),
            stat("mc", "price", 1, 30.0, 1.0, 0.05, 0.02),
            stat("ut_paper", "price", 1, 30.01, 0.9, 0.0, 0.0),
            // An hour without spread (PV at night): no interval, left out of every ratio.
            stat("mc", "price", 2, 10.0, 0.0, 0.0, 0.0),
            stat("ut_paper", "price", 2, 10.0, 0.0, 0.0, 0.0),
            stat("mc", "clearing_error_mw", 0, 1e-12, 1e-13, 2e-14, 1e-14),
            stat("ut_paper", "clearing_error_mw", 0, 3e-11, 5e-13, 0.0, 0.0),
            // A reference without a std (one sample): no std error at all, not 0.
            StatRow {
                std: None,
                ..stat("mc", "wind_mw", 0, 50.0, 0.0, 0.0, 0.0)
            },
            stat("ut_paper", "wind_mw", 0, 52.0, 3.0, 0.0, 0.0),
        ];
        let result = StudyResult {
            rows,
            methods: vec![method("ut_paper"), method("mc")],
            table_levels: 0,
            table_range: None,
            table_export_error_mw: None,
            table_s: 0.0,
            forecast_outputs: Vec::new(),
            tails: Vec::new(),
            histograms: Vec::new(),
            histogram_hours: [19, 3],
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1.0);
        let e = ut_errors(&result, "ut_paper", "mc", "price");
        assert!(close(e.mean_abs, 0.3), "{e:?}");
        assert!(close(e.mean_rel, 0.3 / 40.0), "{e:?}");
        // Hour 0: 0.3 / 0.1; hour 1: 0.01 / 0.05.
        assert!(close(e.mean_ci.unwrap(), 3.0), "{e:?}");
        // Hour 0: 0.1 (0.05 of 2, 2.0 half-widths); hour 1: 0.1 (0.1 of 1, 5.0).
        assert!(close(e.std_abs.unwrap(), 0.1), "{e:?}");
        assert!(close(e.std_rel.unwrap(), 0.1), "{e:?}");
        assert!(close(e.std_ci.unwrap(), 5.0), "{e:?}");
        let c = ut_errors(&result, "ut_paper", "mc", "clearing_error_mw");
        assert!(
            close(c.mean_abs, 2.9e-11) && close(c.std_abs.unwrap(), 4e-13),
            "{c:?}"
        );
        assert_eq!(
            (c.mean_ci, c.std_rel, c.std_ci),
            (None, None, None),
            "{c:?}"
        );
        let w = ut_errors(&result, "ut_paper", "mc", "wind_mw");
        assert!(close(w.mean_abs, 2.0) && w.std_abs.is_none(), "{w:?}");
        let report = report_markdown(&result, 100);
        assert!(
            report.contains("| ut_paper | wind_mw | 2.000e0 | 4.000e-2 | - | - | - | - |"),
            "{report}"
        );
        assert!(
            report.contains(
                "| ut_paper | price | 3.000e-1 | 7.500e-3 | 3.00 | 1.000e-1 | 1.000e-1 | 5.00 |"
            ),
            "{report}"
        );
        assert!(
            report.contains(
                "| ut_paper | clearing_error_mw | 2.900e-11 | 2.900e-11 | - | 4.000e-13 | - | - |"
            ),
            "{report}"
        );
    }
}
