//! Reading the user's input files (scenarios, sweeps, MATPOWER cases) as text, with one
//! clear error per file problem: the file, the flag or field that named it, and the reason.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};
use crate::output::integers::Unsigned;

/// Largest input file read, bytes. MATPOWER's largest cases are a few MB; the cap keeps a
/// device or a wrong file (`/dev/zero`, a data dump) from exhausting memory.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

/// Largest count taken in decimal or scientific notation: 2^53, below which every whole
/// double is an exact integer. Larger counts must be written as integers.
pub const MAX_NOTATION_COUNT: u64 = 1 << 53;

/// What a count may be, for error messages.
const COUNT_EXPECTED: &str = "a whole number of at least 0, e.g. 100000 or 1e5";

/// A count written as a number with a fraction or an exponent (`1e5`, `2.5e5`, `100000.0`):
/// its value when it is a whole number from 0 to 2^53 ([`MAX_NOTATION_COUNT`]), which such a
/// literal gives exactly. The error says what is allowed; the caller checks the range.
pub fn whole_count(x: f64) -> std::result::Result<u64, String> {
    let max = MAX_NOTATION_COUNT as f64;
    if x.is_finite() && x.fract() == 0.0 && x > max {
        Err(format!(
            "{} is above 2^53 in scientific notation; write it as an integer",
            crate::error::compact(x)
        ))
    } else if x.is_finite() && x.fract() == 0.0 && x >= 0.0 {
        // Whole, in 0..=2^53: the conversion is exact (-0.0 gives 0).
        Ok(x as u64)
    } else {
        Err(format!(
            "{} is not {COUNT_EXPECTED}",
            crate::error::compact(x)
        ))
    }
}

/// A count as text (a command-line value): an integer (`100000`), or a whole number in
/// decimal or scientific notation (`1e5`, `2.5e5`) as [`whole_count`] takes it.
pub fn parse_count(s: &str) -> std::result::Result<u64, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    match s.parse::<f64>() {
        Ok(x) if x.is_finite() => whole_count(x).map_err(|e| {
            if x.fract() == 0.0 && x > 0.0 {
                e
            } else {
                format!("{s} is not {COUNT_EXPECTED}")
            }
        }),
        _ => Err(format!("{s:?} is not {COUNT_EXPECTED}")),
    }
}

/// Deserializes a count of a file (`#[serde(deserialize_with = "crate::input::de_count")]`):
/// an integer, or a whole float as [`whole_count`] takes it (TOML reads `samples = 1e5` as
/// a float), that fits `T`. Serializing is unchanged: counts are written as integers.
pub fn de_count<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Unsigned,
{
    let n = d.deserialize_any(CountVisitor)?;
    T::try_from(n).map_err(|_| {
        serde::de::Error::custom(format!("{n} is above this count's largest, {}", T::MAX))
    })
}

/// [`de_count`] for an optional count (with `#[serde(default)]`).
pub fn de_count_opt<'de, D, T>(d: D) -> std::result::Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Unsigned,
{
    de_count(d).map(Some)
}

/// Takes the integers and whole floats of [`de_count`].
struct CountVisitor;

impl serde::de::Visitor<'_> for CountVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(COUNT_EXPECTED)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<u64, E> {
        Ok(v)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<u64, E> {
        whole_count(v).map_err(E::custom)
    }
}

/// Reads the UTF-8 text file `path`, named by `field` (a flag such as `--config` or a
/// field such as `grid.case_file`). Directories, devices, files over [`MAX_INPUT_BYTES`],
/// binary files (NUL bytes) and non-UTF-8 text are refused with [`Error::InputFile`].
pub fn read_text(path: &Path, field: &str) -> Result<String> {
    let refuse = |reason: String| Error::InputFile {
        field: field.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| refuse(io_reason(&e)))?;
    if meta.is_dir() {
        return Err(refuse("is a directory, not a file".into()));
    }
    if !meta.is_file() && !is_pipe(&meta) {
        return Err(refuse("is not a regular file".into()));
    }
    let file = std::fs::File::open(path).map_err(|e| refuse(io_reason(&e)))?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(io_reason(&e)))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        return Err(refuse(format!(
            "larger than {} MiB; input files are text of a few MB at most",
            MAX_INPUT_BYTES >> 20
        )));
    }
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(refuse(format!(
            "a binary file (NUL byte at offset {at}), not a text file"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let byte = e.as_bytes()[at];
        refuse(format!(
            "not UTF-8 text (byte 0x{byte:02x} at offset {at}); save it as UTF-8"
        ))
    })?;
    // A byte-order mark (spreadsheets write one before a CSV's header) is not text.
    Ok(match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    })
}

/// The reason an I/O error gives, without the OS error number for the common cases.
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::IsADirectory => "is a directory, not a file".into(),
        _ => e.to_string(),
    }
}

/// A named pipe (`--config <(generate)`), which is read like a file.
#[cfg(unix)]
fn is_pipe(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_fifo()
}

#[cfg(not(unix))]
fn is_pipe(_meta: &std::fs::Metadata) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(path: &Path) -> String {
        match read_text(path, "grid.case_file") {
            Err(Error::InputFile {
                field,
                path: p,
                reason,
            }) => {
                assert_eq!(field, "grid.case_file");
                assert_eq!(p, path);
                reason
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_each_kind_of_unusable_file_once() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(reason(&dir.path().join("missing.m")), "no such file");
        assert_eq!(reason(dir.path()), "is a directory, not a file");
        let latin1 = dir.path().join("latin1.toml");
        std::fs::write(&latin1, b"# caf\xe9\n").unwrap();
        assert!(reason(&latin1).contains("not UTF-8 text (byte 0xe9 at offset 5)"));
        let binary = dir.path().join("bin.m");
        std::fs::write(&binary, b"PK\x03\x04\x00\x00").unwrap();
        assert!(reason(&binary).contains("binary file (NUL byte at offset 4)"));
        let e = read_text(&binary, "--config").unwrap_err().to_string();
        assert!(e.starts_with("cannot read --config "), "{e}");
        // The reason appears once (no OS error repeated through a source chain).
        let e = read_text(&dir.path().join("x"), "--config")
            .unwrap_err()
            .to_string();
        assert_eq!(e.matches("no such file").count(), 1, "{e}");
    }

    #[derive(Debug, serde::Deserialize)]
    struct Counts {
        #[serde(deserialize_with = "de_count")]
        small: u32,
        #[serde(default, deserialize_with = "de_count_opt")]
        maybe: Option<u64>,
    }

    /// Files' counts: integers, or whole floats up to 2^53 that fit the field's type, in
    /// TOML and in JSON; anything else is refused saying what is allowed.
    #[test]
    fn file_counts_take_integers_and_whole_floats() {
        let toml = |t: &str| toml::from_str::<Counts>(t);
        let c = toml("small = 1e3\nmaybe = 9.007199254740992e15").unwrap();
        assert_eq!((c.small, c.maybe), (1000, Some(1 << 53)));
        let c = toml("small = 4294967295").unwrap();
        assert_eq!((c.small, c.maybe), (u32::MAX, None));
        assert_eq!(toml("small = -0.0").unwrap().small, 0);
        for (text, needle) in [
            ("small = 2.5", "2.5 is not a whole number"),
            ("small = -1", "whole number"),
            ("small = -1e3", "-1000 is not a whole number"),
            ("small = inf", "inf is not a whole number"),
            (
                "small = 4294967296",
                "above this count's largest, 4294967295",
            ),
            ("small = 1e17", "above 2^53"),
            ("small = \"7\"", "whole number"),
        ] {
            let e = toml(text).expect_err(text).to_string();
            assert!(e.contains(needle), "{text}: {e}");
            assert!(e.contains("small"), "{text}: names the key: {e}");
        }
        let json = |t: &str| serde_json::from_str::<Counts>(t);
        let c = json(r#"{"small": 7, "maybe": 18446744073709551615}"#).unwrap();
        assert_eq!((c.small, c.maybe), (7, Some(u64::MAX)));
        assert_eq!(json(r#"{"small": 2e3}"#).unwrap().small, 2000);
        assert!(json(r#"{"small": 0.5}"#).is_err());
    }

    #[test]
    fn text_counts_take_integers_and_exact_scientific_notation() {
        for (text, n) in [
            ("1000", 1000),
            ("1e5", 100_000),
            ("1E6", 1_000_000),
            ("2.5e5", 250_000),
            ("+3e2", 300),
            ("0", 0),
            ("18446744073709551615", u64::MAX),
            ("9007199254740992", 1 << 53),
            ("9.007199254740992e15", 1 << 53),
        ] {
            assert_eq!(parse_count(text), Ok(n), "{text}");
        }
        for text in [
            "1.5", "2.5e0", "-1", "-1e3", "1e400", "inf", "nan", "", "1e", "ten", "1,000",
        ] {
            let err = parse_count(text).expect_err(text);
            assert!(err.contains("whole number"), "{text}: {err}");
        }
        let err = parse_count("1e17").expect_err("above 2^53");
        assert!(err.contains("2^53"), "{err}");
    }

    #[test]
    fn reads_utf8_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ok.toml");
        std::fs::write(&p, "seed = 1 # π\n").unwrap();
        assert_eq!(read_text(&p, "--config").unwrap(), "seed = 1 # π\n");
    }
}
