//! Reading the user's input files (scenarios, sweeps, MATPOWER cases) as text, with one
//! clear error per file problem: the file, the flag or field that named it, and the reason.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Largest input file read, bytes. MATPOWER's largest cases are a few MB; the cap keeps a
/// device or a wrong file (`/dev/zero`, a data dump) from exhausting memory.
pub const MAX_INPUT_BYTES: u64 = 256 << 20;

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
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let byte = e.as_bytes()[at];
        refuse(format!(
            "not UTF-8 text (byte 0x{byte:02x} at offset {at}); save it as UTF-8"
        ))
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

    #[test]
    fn reads_utf8_text() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ok.toml");
        std::fs::write(&p, "seed = 1 # π\n").unwrap();
        assert_eq!(read_text(&p, "--config").unwrap(), "seed = 1 # π\n");
    }
}
