//! Integer columns at the Arrow boundary (issue 12, item 2).
//!
//! Counts and indices (runs, hours, iterations, message counts, block heights) are
//! unsigned in memory but written as signed 64-bit integers, the type the run's and the
//! uncertainty tables use, so that a reader can subtract them: `hour - 1` is -1 at hour
//! 0 in DuckDB and polars instead of an overflow error or a wrap to 2^32 - 1. Readers of
//! the tool's own files turn them back into the unsigned types, refusing a negative value
//! rather than wrapping it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Int64Array};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;

use crate::error::{Error, Result};

/// The Arrow type of every count and index column the tool writes.
pub const INT: DataType = DataType::Int64;

/// `values` as a non-null [`INT`] array; `context` names the table or column in the error
/// for a value above `i64::MAX` (a `u32` always fits).
pub fn int_array<T>(context: &str, values: impl IntoIterator<Item = T>) -> Result<ArrayRef>
where
    T: TryInto<i64> + Copy + std::fmt::Display,
{
    let values = values
        .into_iter()
        .map(|v| {
            v.try_into().map_err(|_| Error::Output {
                context: context.to_string(),
                message: format!("{v} does not fit a signed 64-bit integer column"),
            })
        })
        .collect::<Result<Vec<i64>>>()?;
    Ok(Arc::new(Int64Array::from(values)))
}

/// Why an integer column of a file the tool wrote cannot be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ColumnError {
    /// The column is not there.
    #[error("no column `{column}`")]
    Missing {
        /// The column.
        column: String,
    },
    /// The column has another type (an unsigned type: a file written before the counts
    /// became signed).
    #[error("column `{column}` is {found}, expected {INT}")]
    Type {
        /// The column.
        column: String,
        /// Its type in the file.
        found: DataType,
    },
    /// A null where every row has a value.
    #[error("column `{column}` is null at row {row}")]
    Null {
        /// The column.
        column: String,
        /// The row (0-based, in the batch read).
        row: usize,
    },
    /// A negative value (or one above the in-memory type's maximum) where the column
    /// counts or indexes from 0.
    #[error("column `{column}` holds {value} at row {row}, outside 0..={max}")]
    OutOfRange {
        /// The column.
        column: String,
        /// The row (0-based, in the batch read).
        row: usize,
        /// The value found.
        value: i64,
        /// The largest value the column may hold.
        max: u64,
    },
}

impl ColumnError {
    /// The row at fault, where one is.
    pub fn row(&self) -> Option<usize> {
        match self {
            ColumnError::Null { row, .. } | ColumnError::OutOfRange { row, .. } => Some(*row),
            _ => None,
        }
    }
}

/// The non-null [`INT`] column `column` of `batch` as the unsigned type `T` (`u32` or
/// `u64`) it is in memory; a negative value, or one above `T`'s maximum, is refused.
pub fn unsigned_column<T>(
    batch: &RecordBatch,
    column: &str,
) -> std::result::Result<Vec<T>, ColumnError>
where
    T: Unsigned,
{
    let array = batch
        .column_by_name(column)
        .ok_or_else(|| ColumnError::Missing {
            column: column.to_string(),
        })?;
    let ints = array
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| ColumnError::Type {
            column: column.to_string(),
            found: array.data_type().clone(),
        })?;
    if let Some(row) = (0..ints.len()).find(|&k| ints.is_null(k)) {
        return Err(ColumnError::Null {
            column: column.to_string(),
            row,
        });
    }
    ints.values()
        .iter()
        .enumerate()
        .map(|(row, &value)| {
            T::try_from(value).map_err(|_| ColumnError::OutOfRange {
                column: column.to_string(),
                row,
                value,
                max: T::MAX,
            })
        })
        .collect()
}

/// An unsigned in-memory count type: what [`unsigned_column`] reads a column into, and
/// what a file's count is deserialized into ([`crate::input::de_count`]).
pub trait Unsigned: TryFrom<i64> + TryFrom<u64> {
    /// Its largest value.
    const MAX: u64;
}

impl Unsigned for u32 {
    const MAX: u64 = u32::MAX as u64;
}

impl Unsigned for u64 {
    const MAX: u64 = u64::MAX;
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::UInt32Array;
    use arrow::datatypes::{Field, Schema};

    fn batch(column: ArrayRef) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("hour", column.data_type().clone(), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![column]).unwrap()
    }

    #[test]
    fn counts_are_written_signed_and_read_back() {
        let a = int_array("t", [0u32, 7, u32::MAX]).unwrap();
        assert_eq!(a.data_type(), &INT);
        let b = batch(a);
        assert_eq!(
            unsigned_column::<u32>(&b, "hour").unwrap(),
            [0, 7, u32::MAX]
        );
        assert_eq!(
            unsigned_column::<u64>(&b, "hour").unwrap(),
            [0, 7, u64::from(u32::MAX)]
        );
    }

    #[test]
    fn a_u64_above_i64_max_is_an_error_naming_the_context() {
        let e = int_array("ledger_blocks height", [1u64, u64::MAX]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("ledger_blocks height"), "{text}");
        assert!(text.contains(&u64::MAX.to_string()), "{text}");
        int_array("t", [i64::MAX as u64]).expect("i64::MAX fits");
    }

    #[test]
    fn negative_and_too_large_values_are_refused_with_their_row() {
        let b = batch(Arc::new(Int64Array::from(vec![3, -1])));
        let e = unsigned_column::<u64>(&b, "hour").unwrap_err();
        assert_eq!(
            e,
            ColumnError::OutOfRange {
                column: "hour".into(),
                row: 1,
                value: -1,
                max: u64::MAX
            }
        );
        assert_eq!(e.row(), Some(1));
        assert_eq!(
            e.to_string(),
            "column `hour` holds -1 at row 1, outside 0..=18446744073709551615"
        );
        let b = batch(Arc::new(Int64Array::from(vec![1 << 32])));
        let e = unsigned_column::<u32>(&b, "hour").unwrap_err();
        assert!(e.to_string().contains("outside 0..=4294967295"), "{e}");
    }

    #[test]
    fn unsigned_nulls_and_missing_columns_are_refused() {
        let b = batch(Arc::new(UInt32Array::from(vec![1, 2])));
        let e = unsigned_column::<u32>(&b, "hour").unwrap_err();
        assert_eq!(e.to_string(), "column `hour` is UInt32, expected Int64");
        assert_eq!(e.row(), None);
        let b = batch(Arc::new(Int64Array::from(vec![Some(1), None])));
        assert_eq!(
            unsigned_column::<u32>(&b, "hour").unwrap_err(),
            ColumnError::Null {
                column: "hour".into(),
                row: 1
            }
        );
        assert!(matches!(
            unsigned_column::<u32>(&b, "run").unwrap_err(),
            ColumnError::Missing { .. }
        ));
    }
}
