//! Hourly time series a researcher brings (issue 12, item 5): weather and loads from a CSV
//! or Parquet file, in place of the scenario's built-in profiles.
//!
//! A scenario names the file in `[timeseries]`:
//! ```toml
//! [timeseries]
//! file = "inputs/week.csv"   # CSV or Parquet (by extension), relative to the scenario
//! day = 2                     # which 24-h day of a longer series, 0-based (default 0)
//! ```
//! Every column is optional except that at least one known column must be there; each one
//! present replaces its input for the day:
//!
//! | column | unit | replaces | allowed |
//! |---|---|---|---|
//! | `hour` | h | (a check: 0..23 repeating, or 0, 1, 2, ... over the file) | |
//! | `wind_speed_ms` | m/s | `microgrid.weather.wind_speed_ms` | 0..=100 |
//! | `irradiance_wm2` | W/m^2 | `microgrid.weather.irradiance_wm2` | 0..=1500 |
//! | `tidal_current_ms` | m/s | `microgrid.weather.tidal_current_ms` | 0..=20 |
//! | `mg_load_mw` | MW | `microgrid.load` (peak = the day's largest, profile = load / peak) | 0..=1e5 |
//! | `system_load_mw` | MW | `load.hourly_mw` (then multiplied by `load.scale`) | 0..=1e6 |
//!
//! The file holds whole days (a multiple of 24 rows, at least `24 (day + 1)`); any other
//! column, an empty or non-numeric cell or a value out of range is an error naming the
//! file, the row and the column. The series are applied when the scenario is read, and the
//! effective scenario (`scenario.toml` of a run) holds the values themselves, without
//! `[timeseries]`, so it reproduces the run without the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, number};
use crate::microgrid::HOURS;

/// `[timeseries]`: the file and the day taken from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSeriesSettings {
    /// CSV (`.csv`) or Parquet (`.parquet`) file; relative to the scenario file.
    pub file: PathBuf,
    /// The day of a longer series, 0-based.
    #[serde(default)]
    pub day: usize,
}

/// The known columns: name, allowed range.
pub const COLUMNS: [(&str, f64, f64); 5] = [
    ("wind_speed_ms", 0.0, 100.0),
    ("irradiance_wm2", 0.0, 1500.0),
    ("tidal_current_ms", 0.0, 20.0),
    ("mg_load_mw", 0.0, 1e5),
    ("system_load_mw", 0.0, 1e6),
];

/// One day of the file's series: each known column present, 24 values.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DaySeries {
    /// `(column, 24 values)`, in [`COLUMNS`] order.
    pub columns: Vec<(&'static str, Vec<f64>)>,
}

impl DaySeries {
    /// The values of `column`, when the file has it.
    pub fn get(&self, column: &str) -> Option<&[f64]> {
        self.columns
            .iter()
            .find(|(c, _)| *c == column)
            .map(|(_, v)| v.as_slice())
    }
}

/// A table read from a file: column names and, per column, one cell per row (`None`:
/// empty or null).
struct Table {
    names: Vec<String>,
    cells: Vec<Vec<Option<f64>>>,
}

fn field(path: &Path) -> String {
    format!("timeseries.file {}", path.display())
}

/// Reads day `day` of the series in `path` (see the module docs).
pub fn read_day(path: &Path, day: usize) -> Result<DaySeries> {
    let is_parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    let table = if is_parquet {
        read_parquet(path)?
    } else {
        read_csv(path)?
    };
    select_day(path, &table, day)
}

fn read_csv(path: &Path) -> Result<Table> {
    let text = crate::input::read_text(path, "timeseries.file")?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let Some((_, header)) = lines.next() else {
        return Err(Error::invalid(
            field(path),
            "an empty file",
            "a header row of column names, then one row per hour",
        ));
    };
    let names: Vec<String> = header
        .split(',')
        .map(|c| c.trim().trim_matches('"').to_string())
        .collect();
    let mut cells = vec![Vec::new(); names.len()];
    for (line_no, line) in lines {
        let row: Vec<&str> = line.split(',').map(str::trim).collect();
        if row.len() != names.len() {
            return Err(Error::invalid(
                format!("{} line {}", field(path), line_no + 1),
                format!("{} cells", row.len()),
                format!("{} cells, one per column of the header", names.len()),
            ));
        }
        for (k, cell) in row.iter().enumerate() {
            let value = if cell.is_empty() {
                None
            } else {
                Some(cell.trim_matches('"').parse::<f64>().map_err(|_| {
                    Error::invalid(
                        format!("{} line {} column {}", field(path), line_no + 1, names[k]),
                        *cell,
                        "a number",
                    )
                })?)
            };
            cells[k].push(value);
        }
    }
    Ok(Table { names, cells })
}

fn read_parquet(path: &Path) -> Result<Table> {
    use arrow::array::Array;
    use arrow::compute::cast;
    use arrow::datatypes::DataType;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let bad = |reason: String| Error::InputFile {
        field: "timeseries.file".into(),
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| bad(format!("not a readable Parquet file ({e})")))?;
    let names: Vec<String> = builder
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut cells = vec![Vec::new(); names.len()];
    let reader = builder
        .build()
        .map_err(|e| bad(format!("not a readable Parquet file ({e})")))?;
    for batch in reader {
        let batch = batch.map_err(|e| bad(format!("unreadable data ({e})")))?;
        for (k, column) in batch.columns().iter().enumerate() {
            let as_f64 = cast(column, &DataType::Float64).map_err(|_| {
                Error::invalid(
                    format!("{} column {}", field(path), names[k]),
                    column.data_type().to_string(),
                    "a numeric column",
                )
            })?;
            let a = as_f64
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .ok_or_else(|| bad("a numeric column that did not cast".into()))?;
            cells[k].extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))));
        }
    }
    Ok(Table { names, cells })
}

fn select_day(path: &Path, t: &Table, day: usize) -> Result<DaySeries> {
    let known = |n: &str| n == "hour" || COLUMNS.iter().any(|(c, ..)| *c == n);
    if let Some(n) = t.names.iter().find(|n| !known(n)) {
        return Err(Error::invalid(
            format!("{} column", field(path)),
            n,
            format!("one of hour, {}", COLUMNS.map(|(c, ..)| c).join(", ")),
        ));
    }
    if !t.names.iter().any(|n| n != "hour") {
        return Err(Error::invalid(
            format!("{} columns", field(path)),
            t.names.join(", "),
            format!("at least one of {}", COLUMNS.map(|(c, ..)| c).join(", ")),
        ));
    }
    let rows = t.cells.first().map_or(0, Vec::len);
    let needed = HOURS * (day + 1);
    if !rows.is_multiple_of(HOURS) || rows < needed {
        return Err(Error::invalid(
            format!("{} rows", field(path)),
            rows,
            format!(
                "whole days (a multiple of {HOURS} rows), at least {needed} for timeseries.day = \
                 {day}"
            ),
        ));
    }
    let span = day * HOURS..needed;
    let cell = |k: usize, r: usize| -> Result<f64> {
        t.cells[k][r].filter(|v| v.is_finite()).ok_or_else(|| {
            Error::invalid(
                format!("{} row {} column {}", field(path), r + 1, t.names[k]),
                t.cells[k][r].map_or("an empty cell".to_string(), number),
                "a finite number",
            )
        })
    };
    if let Some(k) = t.names.iter().position(|n| n == "hour") {
        for r in 0..rows {
            let h = cell(k, r)?;
            if h != (r % HOURS) as f64 && h != r as f64 {
                return Err(Error::invalid(
                    format!("{} row {} column hour", field(path), r + 1),
                    number(h),
                    format!(
                        "{} (hours 0..23 repeating) or {r} (hours counted on)",
                        r % HOURS
                    ),
                ));
            }
        }
    }
    let mut out = DaySeries::default();
    for (name, lo, hi) in COLUMNS {
        let Some(k) = t.names.iter().position(|n| n == name) else {
            continue;
        };
        let mut values = Vec::with_capacity(HOURS);
        for r in span.clone() {
            let v = cell(k, r)?;
            if !(lo..=hi).contains(&v) {
                return Err(Error::invalid(
                    format!("{} row {} column {name}", field(path), r + 1),
                    number(v),
                    format!("{}..={}", number(lo), number(hi)),
                ));
            }
            values.push(v);
        }
        out.columns.push((name, values));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn csv(days: usize, extra: &str) -> String {
        let mut s = format!("# a comment\nhour,wind_speed_ms,system_load_mw{extra}\n");
        for r in 0..days * HOURS {
            s.push_str(&format!("{},{},{}\n", r % HOURS, r as f64 * 0.1, 2000 + r));
        }
        s
    }

    #[test]
    fn a_day_of_a_longer_csv_is_taken() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "week.csv", &csv(3, ""));
        let d = read_day(&p, 1).unwrap();
        let wind = d.get("wind_speed_ms").unwrap();
        assert_eq!(wind.len(), 24);
        assert!((wind[0] - 2.4).abs() < 1e-12 && (wind[23] - 4.7).abs() < 1e-12);
        assert_eq!(d.get("system_load_mw").unwrap()[0], 2024.0);
        assert!(d.get("irradiance_wm2").is_none());
    }

    /// A spreadsheet's export: a byte-order mark before the header and CRLF line ends.
    #[test]
    fn a_spreadsheet_csv_reads_as_the_plain_one() {
        let dir = tempfile::tempdir().unwrap();
        let plain = write(dir.path(), "plain.csv", &csv(2, ""));
        let excel = format!("\u{feff}{}", csv(2, "").replace('\n', "\r\n"));
        let excel = write(dir.path(), "excel.csv", &excel);
        let (a, b) = (read_day(&plain, 1).unwrap(), read_day(&excel, 1).unwrap());
        for column in ["wind_speed_ms", "system_load_mw"] {
            assert_eq!(a.get(column), b.get(column), "{column}");
        }
        assert!(b.get("system_load_mw").is_some());
    }

    #[test]
    fn bad_files_name_the_row_column_and_value() {
        let dir = tempfile::tempdir().unwrap();
        let err = |name: &str, text: &str, day: usize| {
            read_day(&write(dir.path(), name, text), day)
                .unwrap_err()
                .to_string()
        };
        let e = err("a.csv", &csv(1, ""), 1);
        assert!(e.contains("rows") && e.contains("at least 48"), "{e}");
        let e = err("b.csv", &csv(1, "").replace("\n5,", "\n6,"), 0);
        assert!(e.contains("row 6 column hour"), "{e}");
        let e = err("c.csv", "hour,wind\n0,1\n", 0);
        assert!(e.contains("wind") && e.contains("wind_speed_ms"), "{e}");
        let e = err("d.csv", &csv(1, "").replace("2003\n", "2e7\n"), 0);
        assert!(
            e.contains("row 4 column system_load_mw") && e.contains("0..=1e6"),
            "{e}"
        );
        let e = err("e.csv", &csv(1, "").replace(",2010\n", ",\n"), 0);
        assert!(
            e.contains("row 11 column system_load_mw") && e.contains("empty"),
            "{e}"
        );
        let e = err("f.csv", &csv(1, "").replace(",2010\n", ",x\n"), 0);
        assert!(
            e.contains("column system_load_mw") && e.contains("a number"),
            "{e}"
        );
    }

    #[test]
    fn parquet_reads_like_csv() {
        use arrow::array::{Float64Array, Int64Array};
        use arrow::datatypes::{DataType, Field, Schema};
        use arrow::record_batch::RecordBatch;
        use std::sync::Arc;
        let schema = Arc::new(Schema::new(vec![
            Field::new("hour", DataType::Int64, false),
            Field::new("irradiance_wm2", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..24)),
                Arc::new(Float64Array::from_iter_values(
                    (0..24).map(|h| h as f64 * 10.0),
                )),
            ],
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sun.parquet");
        crate::output::write_parquet(&p, &batch).unwrap();
        let d = read_day(&p, 0).unwrap();
        assert_eq!(d.get("irradiance_wm2").unwrap()[23], 230.0);
    }
}
