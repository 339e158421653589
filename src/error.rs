//! The library's error type. Errors are for bad input and broken environments only;
//! algorithmic outcomes (no convergence, a binding limit) are values in the results.

use std::path::{Path, PathBuf};

/// Longest piece of user input quoted in an error message, in characters; longer input is
/// cut and the rest counted (`... (N more characters)`).
pub const MAX_QUOTED_CHARS: usize = 200;

/// Characters of a TOML line shown on each side of a parse error's column.
const EXCERPT_CHARS: usize = 60;

/// Longest whole message built from quoted pieces (a message made of many short quoted
/// pieces is cut too), in characters.
const MAX_MESSAGE_CHARS: usize = 10 * MAX_QUOTED_CHARS;

/// `text` cut to [`MAX_QUOTED_CHARS`] characters, with the number of characters left out.
pub fn clip(text: &str) -> String {
    clip_to(text, MAX_QUOTED_CHARS)
}

fn clip_to(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((cut, _)) => {
            let rest = text[cut..].chars().count();
            format!("{}... ({rest} more characters)", &text[..cut])
        }
    }
}

/// A message that may quote user input (`"..."` or `` `...` ``): every quoted piece
/// longer than [`MAX_QUOTED_CHARS`] is cut, and so is the whole message beyond
/// `10 x MAX_QUOTED_CHARS`. The message's own words, outside quotes, are kept.
pub fn clip_message(message: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for piece in message.split_inclusive(['"', '`']) {
        // Keep the closing quote of a cut piece.
        let (body, quote) = match piece.char_indices().last() {
            Some((i, c @ ('"' | '`'))) => (&piece[..i], Some(c)),
            _ => (piece, None),
        };
        if inside {
            out.push_str(&clip(body));
        } else {
            out.push_str(body);
        }
        out.extend(quote);
        inside ^= quote.is_some();
    }
    clip_to(&out, MAX_MESSAGE_CHARS)
}

/// An allowed interval with its unit: `[lo, hi]`, or `(lo, hi]` when `lo_open`. Every
/// bound is finite, so a check also refuses NaN and infinities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Lowest allowed value (excluded when `lo_open`).
    pub lo: f64,
    /// Highest allowed value (included).
    pub hi: f64,
    /// Whether `lo` itself is refused.
    pub lo_open: bool,
    /// Unit named in the error, e.g. `MW` (empty for a pure number).
    pub unit: &'static str,
}

impl Bounds {
    /// `[lo, hi]` in `unit`.
    pub const fn closed(lo: f64, hi: f64, unit: &'static str) -> Self {
        Bounds {
            lo,
            hi,
            lo_open: false,
            unit,
        }
    }

    /// `(lo, hi]` in `unit`.
    pub const fn above(lo: f64, hi: f64, unit: &'static str) -> Self {
        Bounds {
            lo,
            hi,
            lo_open: true,
            unit,
        }
    }

    /// Whether `value` lies in the interval (NaN does not).
    pub fn contains(&self, value: f64) -> bool {
        let above_lo = if self.lo_open {
            value > self.lo
        } else {
            value >= self.lo
        };
        above_lo && value <= self.hi
    }

    /// The interval in words, e.g. `a finite number in (0, 1e5] MW`.
    pub fn describe(&self) -> String {
        let open = if self.lo_open { '(' } else { '[' };
        let unit = if self.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", self.unit)
        };
        format!(
            "a finite number in {open}{}, {}]{unit}",
            number(self.lo),
            number(self.hi)
        )
    }

    /// `Ok` when `value` lies in the interval, else [`Error::InvalidInput`] naming `field`.
    pub fn check(&self, field: &str, value: f64) -> Result<()> {
        if self.contains(value) {
            Ok(())
        } else {
            Err(Error::invalid(field, number(value), self.describe()))
        }
    }
}

/// A number for messages: `1e5` rather than `100000`, `1e-9` rather than `0.000000001`,
/// and `1e300` rather than its 301 digits (`f64`'s `Display` never uses an exponent).
pub fn number(x: f64) -> String {
    if x != 0.0 && (x.abs() >= 1e4 || x.abs() < 1e-3) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

/// Longest positional rendering of a number kept as it is in messages.
const LONG_NUMBER: usize = 20;

/// The values of parallel work, or its first error in item order. A parallel
/// `collect::<Result<_>>()` returns whichever error a thread met first in time, so the
/// same bad input could be reported at another hour from one run to the next; collect
/// into a `Vec<Result<T>>` and pass it here instead.
pub fn in_order<T>(results: Vec<Result<T>>) -> Result<Vec<T>> {
    results.into_iter().collect()
}

/// `x` as `f64`'s `Display` writes it (`99999`, `0.25`), unless that is longer than
/// [`LONG_NUMBER`] characters (1e-300 is 302 of them): then as [`number`] writes it.
pub fn compact(x: f64) -> String {
    short_number(x.to_string())
}

/// `text` as [`compact`] writes it when it is one long number (an `f64` passed to
/// [`Error::invalid`] as the value); anything else unchanged.
fn short_number(text: String) -> String {
    match text.parse::<f64>() {
        Ok(x) if text.len() > LONG_NUMBER && x.is_finite() => number(x),
        _ => text,
    }
}

/// Most items (bus numbers) listed in an error before the rest are counted.
pub const LISTED_ITEMS: usize = 10;

/// `ids` joined by commas: the first [`LISTED_ITEMS`], then `... N more`.
pub fn list_ids(ids: &[usize]) -> String {
    let mut list: Vec<String> = ids
        .iter()
        .take(LISTED_ITEMS)
        .map(usize::to_string)
        .collect();
    if ids.len() > LISTED_ITEMS {
        list.push(format!("... {} more", ids.len() - LISTED_ITEMS));
    }
    list.join(", ")
}

/// The largest char boundary of `text` at or below `index`.
fn floor_char_boundary(text: &str, mut index: usize) -> usize {
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

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
    /// A scenario or sweep file could not be parsed (syntax, unknown field, wrong type).
    #[error("{kind} {path}: {message}")]
    Scenario {
        /// What the file is: `scenario` or `sweep`.
        kind: &'static str,
        /// The file that failed.
        path: PathBuf,
        /// The parser's message, which names the field and location.
        message: String,
    },
    /// A MATPOWER case file is malformed or uses an unsupported feature.
    #[error("MATPOWER case {source_name}{}: {message}", at_line(*line))]
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
    /// A directory `p2pmarket finalize DIR` cannot seal: not a sharded job's, or one whose
    /// tasks did not all finish.
    #[error("directory to seal (DIR) {path}: {reason}")]
    SealDir {
        /// The directory as given.
        path: PathBuf,
        /// Why it cannot be sealed and what to do instead.
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

/// `, line N`, or nothing for line 0 (a problem not tied to a line).
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(", line {line}")
    }
}

impl Error {
    /// Shorthand for [`Error::InvalidInput`]; the rendered value is cut to
    /// [`MAX_QUOTED_CHARS`] (it may be user input of any size).
    pub fn invalid(
        field: impl Into<String>,
        value: impl std::fmt::Display,
        allowed: impl Into<String>,
    ) -> Self {
        Error::InvalidInput {
            field: field.into(),
            value: clip(&short_number(value.to_string())),
            allowed: allowed.into(),
        }
    }

    /// An [`Error::Scenario`] for a TOML file that failed to parse: the line and column,
    /// the parser's message with any quoted input cut to [`MAX_QUOTED_CHARS`], and an
    /// excerpt of the offending line around the column (never the whole line: a one-line
    /// 50 MB file must not be echoed back).
    /// `kind` says what the file is (`scenario`, `sweep`).
    pub fn toml(kind: &'static str, path: &Path, text: &str, error: &toml::de::Error) -> Self {
        let message = match error.span() {
            Some(span) => {
                let start = floor_char_boundary(text, span.start.min(text.len()));
                let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
                let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
                let line = text[..line_start].matches('\n').count() + 1;
                let before: Vec<char> = text[line_start..start].chars().collect();
                let column = before.len() + 1;
                let skip = before.len().saturating_sub(EXCERPT_CHARS);
                let head: String = before[skip..].iter().collect();
                let mut tail: String = text[start..line_end].chars().take(EXCERPT_CHARS).collect();
                let mut prefix = "";
                if skip > 0 {
                    prefix = "...";
                }
                if tail.len() < line_end - start {
                    tail.push_str("...");
                }
                let caret = " ".repeat(prefix.len() + head.chars().count());
                format!(
                    "TOML parse error at line {line}, column {column}: {}\n  | {prefix}{head}{tail}\n  | {caret}^",
                    clip_message(error.message())
                )
            }
            None => clip_message(error.to_string().trim()),
        };
        Error::Scenario {
            kind,
            path: path.to_path_buf(),
            message,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_numbers_in_messages_take_an_exponent() {
        let value = |v: f64| match Error::invalid("f", v, "x") {
            Error::InvalidInput { value, .. } => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(value(1e-300), "1e-300");
        assert_eq!(value(-1e300), "-1e300");
        assert_eq!(value(0.25), "0.25");
        assert_eq!(value(99999.0), "99999");
        assert_eq!(value(1e-7), "0.0000001");
        assert_eq!(compact(1e-300), "1e-300");
        assert_eq!(compact(2500.5), "2500.5");
        let text = match Error::invalid("f", "0".repeat(30) + "x", "x") {
            Error::InvalidInput { value, .. } => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(text, "0".repeat(30) + "x", "not a number: unchanged");
    }

    #[test]
    fn clip_counts_what_it_leaves_out() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_QUOTED_CHARS + 5);
        let cut = clip(&long);
        assert!(cut.starts_with(&"é".repeat(MAX_QUOTED_CHARS)));
        assert!(cut.ends_with("... (5 more characters)"), "{cut}");
    }

    #[test]
    fn clip_message_cuts_quoted_input_and_keeps_the_words() {
        let blob = "a".repeat(10_000);
        let message = format!("invalid type: string \"{blob}\", expected f64");
        let cut = clip_message(&message);
        assert!(cut.starts_with("invalid type: string \"aaa"), "{cut}");
        assert!(
            cut.ends_with("(9800 more characters)\", expected f64"),
            "{cut}"
        );
        // Many short quoted pieces are bounded as a whole.
        let many = "`x`, ".repeat(10_000);
        assert!(clip_message(&many).chars().count() < MAX_MESSAGE_CHARS + 40);
    }

    #[test]
    fn toml_errors_quote_an_excerpt_of_the_line() {
        let text = format!("a = 1\nb = \"{}\" c\n", "z".repeat(100_000));
        let err = toml::from_str::<toml::Table>(&text).expect_err("junk after the string");
        let shown = Error::toml("scenario", Path::new("s.toml"), &text, &err).to_string();
        assert!(shown.contains("s.toml"), "{shown}");
        assert!(shown.contains("line 2, column 100008"), "{shown}");
        assert!(shown.len() < 600, "{shown}");
        // The caret sits under the column shown in the excerpt.
        let lines: Vec<&str> = shown.lines().collect();
        let excerpt = lines[lines.len() - 2];
        let caret = lines[lines.len() - 1].find('^').expect("caret");
        assert_eq!(excerpt.chars().nth(caret), Some('c'), "{shown}");
    }

    #[test]
    fn bounds_describe_and_check() {
        let b = Bounds::above(0.0, 1e5, "MW");
        assert_eq!(b.describe(), "a finite number in (0, 1e5] MW");
        assert!(b.contains(1e5) && !b.contains(0.0) && !b.contains(f64::NAN));
        let e = b.check("x", 1e300).expect_err("too large").to_string();
        assert_eq!(
            e,
            "invalid value for `x`: 1e300 (allowed: a finite number in (0, 1e5] MW)"
        );
        assert_eq!(
            Bounds::closed(-1.0, 0.5, "").describe(),
            "a finite number in [-1, 0.5]"
        );
        assert_eq!(number(1e-9), "1e-9");
        assert_eq!(number(2850.0), "2850");
        assert_eq!(number(f64::NAN), "NaN");
    }

    #[test]
    fn list_ids_counts_the_rest() {
        assert_eq!(list_ids(&[1, 2]), "1, 2");
        let ids: Vec<usize> = (1..=12).collect();
        assert_eq!(list_ids(&ids), "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ... 2 more");
    }
}
