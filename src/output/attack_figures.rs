//! Figures of an attack sweep ([`crate::sweep`] with `attack.*` parameters), from its
//! `runs` table: heat maps over the attack's magnitude `|attack_size|` (rows) and its
//! first attacked iteration (columns), one panel per attacked variable, for each defence
//! mode present:
//! - `attack_converged_{defence}`: the fraction of runs whose attacked hour converged;
//! - `attack_deviation_{defence}`: the median final deviation from the attack-free twin
//!   (`deviation`: $/MWh for the price, MW for the powers);
//! - `attack_price_bias_{defence}`, `attack_money_moved_{defence}`: the economic damage
//!   of the runs that still converge, median price bias ($/MWh) and money moved ($/h);
//!   a cell with no converged run is grey.
//!
//! An axis with at most [`MAX_CATEGORIES`] distinct values has one cell per value; a
//! drawn one is cut into [`BINS`] bins of (nearly) equal counts, labelled by their range.

use std::path::Path;

use arrow::array::{Array, BooleanArray, Float64Array, StringArray};

use crate::error::{Error, Result};
use crate::output::integers::unsigned_column;
use crate::output::parquet::{Sink, read_parquet};
use crate::output::plots::{FigureOptions, HeatMap, write_heatmaps};

/// Most distinct values an axis shows one by one.
pub const MAX_CATEGORIES: usize = 12;
/// Bins of an axis with more distinct values.
pub const BINS: usize = 8;

/// The columns of one attack run the figures use.
#[derive(Debug, Clone, PartialEq)]
pub struct AttackRow {
    /// `attack_variable`.
    pub variable: String,
    /// `attack_size`.
    pub size: f64,
    /// `attack_first_iteration`.
    pub first_iteration: u32,
    /// `attack_defence`.
    pub defence: String,
    /// `attack_converged`.
    pub converged: bool,
    /// `deviation`.
    pub deviation: f64,
    /// `price_bias`.
    pub price_bias: f64,
    /// `money_moved`.
    pub money_moved: f64,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::invalid(
        "--sweep",
        path.display().to_string(),
        format!(
            "the output directory of a finished attack sweep; {}",
            message.into()
        ),
    )
}

/// Reads every attack run of the sweep in `dir` (`runs/pcc_bus=*/part-*.parquet`).
/// A directory without a finished attack sweep is bad input.
pub fn read_attack_rows(dir: &Path) -> Result<Vec<AttackRow>> {
    if !dir.is_dir() {
        return Err(bad(dir, "it is not a directory"));
    }
    if !dir.join(crate::sweep::MANIFEST_NAME).is_file() {
        return Err(bad(
            dir,
            format!(
                "it holds no {}: no sweep finished there (a sharded one is sealed by \
                 `p2pmarket finalize`)",
                crate::sweep::MANIFEST_NAME
            ),
        ));
    }
    let runs = dir.join("runs");
    let mut files = Vec::new();
    let list = |d: &Path| -> Result<Vec<std::path::PathBuf>> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .map_err(|e| Error::io(format!("reading {}", d.display()), e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    for partition in list(&runs)? {
        if partition.is_dir() {
            files.extend(list(&partition)?.into_iter().filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("part-") && n.ends_with(".parquet"))
            }));
        }
    }
    let mut rows = Vec::new();
    for path in files {
        let b = read_parquet(&path)?;
        fn col<'a, T: Array + 'static>(
            b: &'a arrow::record_batch::RecordBatch,
            name: &str,
            path: &Path,
        ) -> Result<&'a T> {
            b.column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<T>())
                .ok_or_else(|| bad(path, format!("no column `{name}`: not an attack sweep")))
        }
        let variable = col::<StringArray>(&b, "attack_variable", &path)?;
        let size = col::<Float64Array>(&b, "attack_size", &path)?;
        let first = unsigned_column::<u32>(&b, "attack_first_iteration")
            .map_err(|e| bad(&path, e.to_string()))?;
        let defence = col::<StringArray>(&b, "attack_defence", &path)?;
        let converged = col::<BooleanArray>(&b, "attack_converged", &path)?;
        let deviation = col::<Float64Array>(&b, "deviation", &path)?;
        let bias = col::<Float64Array>(&b, "price_bias", &path)?;
        let money = col::<Float64Array>(&b, "money_moved", &path)?;
        for (k, first_iteration) in first.into_iter().enumerate() {
            rows.push(AttackRow {
                variable: variable.value(k).to_string(),
                size: size.value(k),
                first_iteration,
                defence: defence.value(k).to_string(),
                converged: converged.value(k),
                deviation: deviation.value(k),
                price_bias: bias.value(k),
                money_moved: money.value(k),
            });
        }
    }
    if rows.is_empty() {
        return Err(bad(dir, "no runs"));
    }
    Ok(rows)
}

/// One axis: cell edges over the values (categories: each value its own cell).
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Lower edges (inclusive), ascending; a value belongs to the last edge <= it.
    pub edges: Vec<f64>,
    /// Cell labels.
    pub labels: Vec<String>,
}

impl Axis {
    /// The axis of `values`: one cell per distinct value when there are at most
    /// [`MAX_CATEGORIES`], else [`BINS`] bins cut at quantiles.
    pub fn of(values: &[f64]) -> Axis {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let mut distinct = v.clone();
        distinct.dedup();
        if distinct.len() <= MAX_CATEGORIES {
            return Axis {
                labels: distinct.iter().map(|x| short(*x)).collect(),
                edges: distinct,
            };
        }
        let mut edges: Vec<f64> = (0..BINS).map(|b| v[b * v.len() / BINS]).collect();
        edges.dedup();
        let labels = edges
            .iter()
            .enumerate()
            .map(|(k, lo)| {
                let hi = edges.get(k + 1).copied().unwrap_or(v[v.len() - 1]);
                format!("{}-{}", short(*lo), short(hi))
            })
            .collect();
        Axis { edges, labels }
    }

    /// The cell of `x` (`None` for a non-finite value).
    pub fn cell(&self, x: f64) -> Option<usize> {
        if !x.is_finite() {
            return None;
        }
        Some(self.edges.iter().rposition(|&e| e <= x).unwrap_or(0))
    }
}

/// A tick label: up to 3 significant digits.
fn short(x: f64) -> String {
    if x == 0.0 {
        "0".into()
    } else if x.abs() >= 1e4 || x.abs() < 1e-2 {
        format!("{x:.0e}")
    } else {
        format!("{}", (x * 1000.0).round() / 1000.0)
    }
}

/// The median of `v` (NaN when empty; +inf sorts last).
fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        let (a, b) = (v[n / 2 - 1], v[n / 2]);
        if a == b { a } else { a + (b - a) / 2.0 }
    }
}

/// What a figure shows in each cell.
#[derive(Debug, Clone, Copy)]
enum Measure {
    Converged,
    Deviation,
    PriceBias,
    MoneyMoved,
}

impl Measure {
    const ALL: [Measure; 4] = [
        Measure::Converged,
        Measure::Deviation,
        Measure::PriceBias,
        Measure::MoneyMoved,
    ];

    fn name(self) -> &'static str {
        match self {
            Measure::Converged => "converged",
            Measure::Deviation => "deviation",
            Measure::PriceBias => "price_bias",
            Measure::MoneyMoved => "money_moved",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Measure::Converged => "fraction of runs whose attacked hour converged",
            Measure::Deviation => "median final deviation from the attack-free result",
            Measure::PriceBias => "median price bias of the runs that converge, $/MWh",
            Measure::MoneyMoved => "median money moved by the runs that converge, $/h",
        }
    }

    fn value(self, cell: &[&AttackRow]) -> f64 {
        match self {
            Measure::Converged if cell.is_empty() => f64::NAN,
            Measure::Converged => {
                cell.iter().filter(|r| r.converged).count() as f64 / cell.len() as f64
            }
            Measure::Deviation => median(cell.iter().map(|r| r.deviation).collect()),
            Measure::PriceBias => median(
                cell.iter()
                    .filter(|r| r.converged)
                    .map(|r| r.price_bias)
                    .collect(),
            ),
            Measure::MoneyMoved => median(
                cell.iter()
                    .filter(|r| r.converged)
                    .map(|r| r.money_moved)
                    .collect(),
            ),
        }
    }
}

/// The order variables are shown in (the attack model's code order).
fn variable_rank(name: &str) -> usize {
    crate::attack::AttackVariable::ALL
        .iter()
        .position(|v| v.name() == name)
        .unwrap_or(usize::MAX)
}

/// Writes the figures of `rows` (see the module docs) into `sink`; returns the file names.
pub fn write_attack_figures(
    sink: &mut dyn Sink,
    rows: &[AttackRow],
    figures: &FigureOptions,
) -> Result<Vec<String>> {
    let sizes = Axis::of(&rows.iter().map(|r| r.size.abs()).collect::<Vec<_>>());
    let firsts = Axis::of(
        &rows
            .iter()
            .map(|r| f64::from(r.first_iteration))
            .collect::<Vec<_>>(),
    );
    let mut variables: Vec<&str> = rows.iter().map(|r| r.variable.as_str()).collect();
    variables.sort_by_key(|v| (variable_rank(v), v.to_string()));
    variables.dedup();
    let mut names = Vec::new();
    for defence in ["undefended", "defended"] {
        let here: Vec<&AttackRow> = rows.iter().filter(|r| r.defence == defence).collect();
        if here.is_empty() {
            continue;
        }
        for measure in Measure::ALL {
            let maps: Vec<HeatMap> = variables
                .iter()
                .map(|&variable| {
                    let mut cells: Vec<Vec<Vec<&AttackRow>>> =
                        vec![vec![Vec::new(); firsts.edges.len()]; sizes.edges.len()];
                    for r in here.iter().filter(|r| r.variable == variable) {
                        if let (Some(y), Some(x)) = (
                            sizes.cell(r.size.abs()),
                            firsts.cell(f64::from(r.first_iteration)),
                        ) {
                            cells[y][x].push(r);
                        }
                    }
                    HeatMap {
                        title: variable.to_string(),
                        x_label: "first attacked iteration".into(),
                        y_label: "|size| (unit of the variable)".into(),
                        x_ticks: firsts.labels.clone(),
                        y_ticks: sizes.labels.clone(),
                        values: cells
                            .iter()
                            .map(|row| row.iter().map(|c| measure.value(c)).collect())
                            .collect(),
                        log_colour: !matches!(measure, Measure::Converged),
                        range: matches!(measure, Measure::Converged).then_some((0.0, 1.0)),
                    }
                })
                .collect();
            names.extend(write_heatmaps(
                sink,
                &format!("attack_{}_{defence}", measure.name()),
                &format!("{}, {defence}", measure.title()),
                &maps,
                4,
                figures,
            )?);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_categories_or_quantile_bins() {
        let a = Axis::of(&[1.0, 0.1, 1.0, 10.0]);
        assert_eq!(a.edges, [0.1, 1.0, 10.0]);
        assert_eq!(a.labels, ["0.1", "1", "10"]);
        assert_eq!(a.cell(1.0), Some(1));
        let drawn: Vec<f64> = (0..100).map(|k| k as f64 / 10.0).collect();
        let b = Axis::of(&drawn);
        assert_eq!(b.edges.len(), BINS);
        assert_eq!(b.cell(0.0), Some(0));
        assert_eq!(b.cell(9.9), Some(BINS - 1));
        let counts = (0..BINS)
            .map(|k| drawn.iter().filter(|&&x| b.cell(x) == Some(k)).count())
            .collect::<Vec<_>>();
        assert!(
            counts
                .iter()
                .all(|&c| c == 100 / BINS || c == 100 / BINS + 1),
            "{counts:?}"
        );
        assert_eq!(b.cell(f64::NAN), None);
    }

    #[test]
    fn medians_and_fractions() {
        assert!(median(vec![]).is_nan());
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![1.0, f64::INFINITY, 2.0, 4.0]), 3.0);
        let row = |converged, bias| AttackRow {
            variable: "price".into(),
            size: 1.0,
            first_iteration: 0,
            defence: "undefended".into(),
            converged,
            deviation: 1.0,
            price_bias: bias,
            money_moved: 0.0,
        };
        let (a, b, c) = (row(true, 1.0), row(false, 50.0), row(true, 3.0));
        let cell = [&a, &b, &c];
        assert_eq!(Measure::Converged.value(&cell), 2.0 / 3.0);
        // The damage of the runs that still converge only.
        assert_eq!(Measure::PriceBias.value(&cell), 2.0);
        assert!(Measure::PriceBias.value(&[&b]).is_nan());
    }
}
