//! The library's error type. Errors are for bad input and broken environments only;
//! algorithmic outcomes (no convergence, a binding limit) are values in the results.

use std::path::PathBuf;

/// Everything that can go wrong before or around a market run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A scenario or data value is outside its allowed range.
    #[error("invalid value for `{field}`: {value} (allowed: {allowed})")]
    InvalidInput {
        /// Dotted path of the offending field, e.g. `microgrid.wind.rated_mw`.
        field: String,
        /// The value that was given, rendered for the message.
        value: String,
        /// The allowed range or set, in words.
        allowed: String,
    },
    /// A scenario file could not be parsed (syntax, unknown field, wrong type).
    #[error("scenario {path}: {message}")]
    Scenario {
        /// The file that failed.
        path: PathBuf,
        /// The parser's message, which names the field and location.
        message: String,
    },
    /// A MATPOWER case file is malformed or uses an unsupported feature.
    #[error("MATPOWER case {source_name}, line {line}: {message}")]
    Matpower {
        /// File name or `<embedded case24_ieee_rts>`.
        source_name: String,
        /// 1-based line number (0 when the problem is not tied to a line).
        line: usize,
        /// What is wrong, in words.
        message: String,
    },
    /// The QP solver failed on a problem that should be solvable (numerical trouble),
    /// or the problem is infeasible for the given data.
    #[error("{problem}: {message}")]
    Solver {
        /// Which optimisation problem (e.g. `hourly reference, hour 7`).
        problem: String,
        /// The solver status or reason.
        message: String,
    },
    /// File-system or output failure.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An input file named by a flag or field cannot be used: missing, a directory, not
    /// UTF-8 text, binary, or unreadable.
    #[error("cannot read {field} {path}: {reason}")]
    InputFile {
        /// The flag or field that named the file, e.g. `--config` or `grid.case_file`.
        field: String,
        /// The file as given.
        path: PathBuf,
        /// Why it cannot be read, once, in words.
        reason: String,
    },
    /// An output directory the command must not write into (it holds files the tool did
    /// not write, another sweep, or names the tool's files would overwrite).
    #[error("output directory (--out) {path}: {reason}")]
    OutputDir {
        /// The directory as given.
        path: PathBuf,
        /// Why it is refused and what to do instead.
        reason: String,
    },
    /// Parquet/Arrow encoding failure.
    #[error("writing {context}: {message}")]
    Output {
        /// What was being written.
        context: String,
        /// The underlying message.
        message: String,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        allowed: impl Into<String>,
    ) -> Self {
        Error::InvalidInput {
            field: field.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }

    /// The same error reported against another field (a value checked by a shared
    /// validator, named the way the user wrote it); other errors pass through.
    pub fn with_field(self, field: &str) -> Self {
        match self {
            Error::InvalidInput { value, allowed, .. } => Error::InvalidInput {
                field: field.to_string(),
                value,
                allowed,
            },
            other => other,
        }
    }

    /// The same error with `prefix` put before its field (a nested value checked by its
    /// own validator, e.g. `runs[3].` + `rci.chi`); other errors pass through.
    pub fn with_field_prefix(self, prefix: &str) -> Self {
        match self {
            Error::InvalidInput {
                field,
                value,
                allowed,
            } => Error::InvalidInput {
                field: format!("{prefix}{field}"),
                value,
                allowed,
            },
            other => other,
        }
    }

    /// Shorthand for [`Error::Io`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias for the library.
pub type Result<T> = std::result::Result<T, Error>;
