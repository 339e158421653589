//! Where output goes: Parquet files written atomically, and the [`Sink`] abstraction that
//! lets the same writers target a directory ([`DirSink`]) or memory ([`MemorySink`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::compute::concat_batches;
use arrow::datatypes::Schema;
use arrow::record_batch::{RecordBatch, RecordBatchReader};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::compute_leaves;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Wraps a Parquet error as an [`Error::Output`] for `path`.
fn parquet_err(path: &Path) -> impl Fn(parquet::errors::ParquetError) -> Error + '_ {
    move |e| Error::Output {
        context: path.display().to_string(),
        message: e.to_string(),
    }
}

/// Writes `batch` to `path` as a ZSTD-compressed Parquet file. The data goes to
/// `path.with_extension("parquet.tmp")` first and is renamed into place, so a file under
/// the final name is always complete.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<()> {
    write_parquet_via(path, &path.with_extension("parquet.tmp"), batch)
}

/// Writes `batch` to `tmp` as a ZSTD-compressed Parquet file, synced, and renames it to
/// `path`; on any error `tmp` is removed.
pub fn write_parquet_via(path: &Path, tmp: &Path, batch: &RecordBatch) -> Result<()> {
    let result = write_parquet_file(tmp, batch).and_then(|()| {
        std::fs::rename(tmp, path)
            .map_err(|e| Error::io(format!("renaming {} into place", tmp.display()), e))
    });
    if result.is_err() {
        // Best effort: the original error is the one worth reporting.
        let _ = std::fs::remove_file(tmp);
    }
    result
}

/// The plain Parquet key-value metadata entry that maps every column to its `unit` and
/// `description` (a JSON object keyed by column name), for readers that do not decode
/// Arrow's schema blob (`ARROW:schema`), such as polars and DuckDB.
pub const COLUMNS_KEY: &str = "p2pmarket.columns";

/// The plain key-value metadata of a file of `schema`: the schema's own metadata (engine
/// tag, adapter, encoding version), sorted by key, then [`COLUMNS_KEY`] when a column
/// carries a unit or a description. Arrow's writer stores both only inside the
/// `ARROW:schema` blob, which only Arrow readers decode.
fn key_value_metadata(schema: &Schema) -> Vec<KeyValue> {
    let mut kv: Vec<KeyValue> = schema
        .metadata()
        .iter()
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
        .collect();
    let columns: BTreeMap<&str, BTreeMap<&str, &str>> = schema
        .fields()
        .iter()
        .filter_map(|f| {
            let described: BTreeMap<&str, &str> = ["unit", "description"]
                .into_iter()
                .filter_map(|k| f.metadata().get(k).map(|v| (k, v.as_str())))
                .collect();
            (!described.is_empty()).then_some((f.name().as_str(), described))
        })
        .collect();
    if !columns.is_empty() {
        let json = serde_json::to_string(&columns).expect("a map of strings serializes");
        kv.push(KeyValue::new(COLUMNS_KEY.to_string(), json));
    }
    kv
}

/// The writer properties of every Parquet file the tool writes: ZSTD, and the plain
/// key-value metadata of [`key_value_metadata`].
fn writer_properties(schema: &Schema) -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_key_value_metadata(Some(key_value_metadata(schema)))
        .build()
}

/// `batch` as the bytes of a Parquet file written like [`write_parquet`]'s (for a file
/// whose hash must be known before it is stored); `name` labels errors.
pub fn parquet_bytes(name: &str, batch: &RecordBatch) -> Result<Vec<u8>> {
    encode_parquet(Vec::new(), batch, writer_properties(&batch.schema()))
        .map_err(parquet_err(Path::new(name)))
}

/// Writes and syncs one Parquet file (no renaming).
fn write_parquet_file(path: &Path, batch: &RecordBatch) -> Result<()> {
    let file =
        File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    let file = encode_parquet(file, batch, writer_properties(&batch.schema()))
        .map_err(parquet_err(path))?;
    // Sync before the rename so that a crash cannot leave a renamed but empty file.
    file.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// Encodes `batch` as a Parquet file with `props` into `out` and returns it: the bytes
/// [`ArrowWriter`] writes for the same batch and properties, but with the columns of each
/// row group encoded (dictionary, statistics, ZSTD) in parallel over rayon's threads. A
/// sweep part's `run_hours` table has a million rows or more, and one thread encoding it
/// was the serial step of a sweep on a many-core node.
///
/// The row groups are [`ArrowWriter`]'s: slices of the writer properties' row count
/// limit, each column chunk encoded by the writer's own column writer and appended in
/// column order, so the bytes do not depend on the thread count (a test holds them equal
/// to [`ArrowWriter`]'s).
fn encode_parquet<W: std::io::Write + Send>(
    out: W,
    batch: &RecordBatch,
    props: WriterProperties,
) -> parquet::errors::Result<W> {
    use parquet::errors::ParquetError;
    let schema = batch.schema();
    // `ArrowWriter` also splits row groups by bytes when asked to; the tool never is.
    let bytes_limit = props.max_row_group_bytes().is_some();
    let mut writer = ArrowWriter::try_new(out, schema.clone(), Some(props))?;
    // One Parquet leaf column per field (every table the tool writes is flat) lets each
    // column be encoded alone; otherwise, or with a byte limit, `ArrowWriter` does it all.
    let flat = schema.fields().iter().all(|f| !f.data_type().is_nested());
    if bytes_limit || !flat {
        writer.write(batch)?;
        return writer.into_inner();
    }
    let (mut file, factory) = writer.into_serialized_writer()?;
    let rows_per_group = file
        .properties()
        .max_row_group_row_count()
        .unwrap_or(usize::MAX)
        .max(1);
    let rows = batch.num_rows();
    let mut start = 0;
    while start < rows {
        let len = rows_per_group.min(rows - start);
        let group = batch.slice(start, len);
        let writers = factory.create_column_writers(file.flushed_row_groups().len())?;
        if writers.len() != schema.fields().len() {
            return Err(ParquetError::General(format!(
                "{} column writers for {} flat fields",
                writers.len(),
                schema.fields().len()
            )));
        }
        // A column's leaf (its levels) is computed where it is encoded and dropped with
        // it, as `ArrowWriter` does: all of them at once would hold an index per row and
        // column.
        let chunks = writers
            .into_par_iter()
            .zip(schema.fields().par_iter().zip(group.columns()))
            .map(|(mut writer, (field, column))| {
                for leaf in compute_leaves(field, column)? {
                    writer.write(&leaf)?;
                }
                writer.close()
            })
            .collect::<parquet::errors::Result<Vec<_>>>()?;
        let mut row_group = file.next_row_group()?;
        for chunk in chunks {
            chunk.append_to_row_group(&mut row_group)?;
        }
        row_group.close()?;
        start += len;
    }
    file.into_inner()
}

/// Reads a whole Parquet file as one batch, so that row numbers in errors are the file's.
pub fn read_parquet(path: &Path) -> Result<RecordBatch> {
    let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let unreadable = |e: &dyn std::fmt::Display| Error::Output {
        context: path.display().to_string(),
        message: e.to_string(),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| unreadable(&e))?
        .build()
        .map_err(|e| unreadable(&e))?;
    let schema = reader.schema();
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| unreadable(&e))?;
    concat_batches(&schema, &batches).map_err(|e| unreadable(&e))
}

/// A destination for a run's tables and files.
pub trait Sink {
    /// Stores a table under `name` (a [`DirSink`] writes `{name}.parquet`).
    fn write_table(&mut self, name: &str, batch: &RecordBatch) -> Result<()>;

    /// Stores a file's bytes under the file name `name`.
    fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()>;

    /// Stores a file that `render` must write to a path (plotters' PNG encoder only
    /// writes to files). The path handed to `render` ends with `name`'s extension, since
    /// the encoder picks the format from it.
    ///
    /// The default renders into a scratch file in the system temporary directory, reads
    /// it back and passes the bytes to [`Sink::write_bytes`].
    fn write_rendered(
        &mut self,
        name: &str,
        render: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()> {
        check_name(name)?;
        let scratch = Scratch(std::env::temp_dir().join(format!(
            "p2pmarket-{}-{}-{name}",
            std::process::id(),
            SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed)
        )));
        render(&scratch.0)?;
        let bytes = std::fs::read(&scratch.0)
            .map_err(|e| Error::io(format!("reading back {}", scratch.0.display()), e))?;
        self.write_bytes(name, &bytes)
    }
}

/// Distinguishes the scratch files of one process.
static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A scratch file, removed when dropped (also on error paths).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        // The file may never have been created; nothing to report either way.
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Rejects names that would escape the sink's directory or clash with staging files.
fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name == "."
        || name == ".."
        || name.contains(['/', '\\'])
        || name.ends_with(".tmp");
    if bad {
        return Err(Error::Output {
            context: format!("output file `{name}`"),
            message: "a plain file name is required (no path separators, not ending in .tmp)"
                .into(),
        });
    }
    Ok(())
}

/// A sink writing files into a directory; each file appears atomically (staged and
/// renamed).
#[derive(Debug, Clone)]
pub struct DirSink {
    dir: PathBuf,
    written: Vec<String>,
}

impl DirSink {
    /// A sink writing into `dir`, which must exist.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DirSink {
            dir: dir.into(),
            written: Vec::new(),
        }
    }

    /// The directory written into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File names written so far, in order.
    pub fn written(&self) -> &[String] {
        &self.written
    }

    /// The staging path of file `name`: `{stem}.tmp.{ext}`, keeping the extension last
    /// because plotters' encoder picks the image format from it.
    fn staging_path(&self, name: &str) -> PathBuf {
        let path = Path::new(name);
        let staged = match (path.file_stem(), path.extension()) {
            (Some(stem), Some(ext)) => {
                format!("{}.tmp.{}", stem.to_string_lossy(), ext.to_string_lossy())
            }
            _ => format!("{name}.tmp"),
        };
        self.dir.join(staged)
    }

    /// Renames a staged file into place, removing it on failure.
    fn commit(&mut self, staged: &Path, name: &str) -> Result<()> {
        let target = self.dir.join(name);
        if let Err(e) = std::fs::rename(staged, &target) {
            let _ = std::fs::remove_file(staged);
            return Err(Error::io(
                format!("renaming {} into place", staged.display()),
                e,
            ));
        }
        self.written.push(name.to_string());
        Ok(())
    }
}

impl Sink for DirSink {
    fn write_table(&mut self, name: &str, batch: &RecordBatch) -> Result<()> {
        let file = format!("{name}.parquet");
        check_name(&file)?;
        write_parquet(&self.dir.join(&file), batch)?;
        self.written.push(file);
        Ok(())
    }

    fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name)?;
        let staged = self.staging_path(name);
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = File::create(&staged)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&staged);
            return Err(Error::io(format!("writing {}", staged.display()), e));
        }
        self.commit(&staged, name)
    }

    fn write_rendered(
        &mut self,
        name: &str,
        render: &mut dyn FnMut(&Path) -> Result<()>,
    ) -> Result<()> {
        check_name(name)?;
        let staged = self.staging_path(name);
        if let Err(e) = render(&staged) {
            // A failed renderer may still have flushed a partial image when dropped.
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
        self.commit(&staged, name)
    }
}

/// A sink keeping everything in memory (for tests and embedding).
#[derive(Debug, Clone, Default)]
pub struct MemorySink {
    /// Tables by name.
    pub tables: BTreeMap<String, RecordBatch>,
    /// Files by name.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl MemorySink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Sink for MemorySink {
    fn write_table(&mut self, name: &str, batch: &RecordBatch) -> Result<()> {
        self.tables.insert(name.to_string(), batch.clone());
        Ok(())
    }

    fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        check_name(name)?;
        self.files.insert(name.to_string(), bytes.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::tables::{hourly_table, trajectory_table};
    use crate::output::test_support::{day, entries};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    fn read_back(path: &Path) -> RecordBatch {
        let file = File::open(path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches.len(), 1);
        batches.into_iter().next().unwrap()
    }

    #[test]
    fn hourly_table_round_trips_through_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hourly.parquet");
        let batch = hourly_table(&day(true)).unwrap();
        write_parquet(&path, &batch).unwrap();
        let back = read_back(&path);
        // Schema (with its unit metadata) and every value come back unchanged.
        assert_eq!(back, batch);
        assert_eq!(entries(dir.path()), vec!["hourly.parquet"]);
        let meta = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap())
            .unwrap()
            .metadata()
            .clone();
        let codec = meta.row_group(0).column(0).compression();
        assert!(matches!(codec, Compression::ZSTD(_)), "{codec:?}");
    }

    #[test]
    fn trajectory_table_round_trips_through_parquet_even_empty() {
        let dir = tempfile::tempdir().unwrap();
        for keep in [true, false] {
            let path = dir.path().join(format!("traj-{keep}.parquet"));
            let batch = trajectory_table(&day(keep)).unwrap();
            write_parquet(&path, &batch).unwrap();
            let file = File::open(&path).unwrap();
            let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
            // Arrow's reader adds the plain key-value metadata to the schema's.
            assert_eq!(builder.schema().fields(), batch.schema().fields());
            let rows: usize = builder
                .build()
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .sum();
            assert_eq!(rows, batch.num_rows());
        }
    }

    #[test]
    fn units_and_schema_metadata_are_plain_key_value_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hourly.parquet");
        let plain = hourly_table(&day(true)).unwrap();
        let batch = plain.clone();
        let mut meta = batch.schema().metadata().clone();
        meta.insert("p2pmarket.engine".to_string(), "test".to_string());
        let schema = Arc::new(batch.schema().as_ref().clone().with_metadata(meta));
        let batch = batch.with_schema(schema).unwrap();
        write_parquet(&path, &batch).unwrap();
        let reader =
            parquet::file::reader::SerializedFileReader::new(File::open(&path).unwrap()).unwrap();
        use parquet::file::reader::FileReader;
        let kv: std::collections::HashMap<String, String> = reader
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|e| (e.key.clone(), e.value.clone().unwrap_or_default()))
            .collect();
        assert_eq!(kv["p2pmarket.engine"], "test");
        let columns: serde_json::Value = serde_json::from_str(&kv[COLUMNS_KEY]).unwrap();
        assert_eq!(columns["price"]["unit"], "$/MWh");
        assert_eq!(columns["hour"]["unit"], "h");
        assert!(
            columns["hour"]["description"]
                .as_str()
                .unwrap()
                .contains("0..=23")
        );
        // Every column is described.
        assert_eq!(
            columns.as_object().unwrap().len(),
            batch.schema().fields().len()
        );
        // The bytes do not depend on the order of the schema's metadata map.
        let with_keys = |keys: &[&str]| {
            let meta: std::collections::HashMap<String, String> = keys
                .iter()
                .map(|k| (k.to_string(), format!("value of {k}")))
                .collect();
            let schema = Arc::new(plain.schema().as_ref().clone().with_metadata(meta));
            parquet_bytes("hourly", &plain.clone().with_schema(schema).unwrap()).unwrap()
        };
        let keys: Vec<String> = (0..16).map(|i| format!("key{i}")).collect();
        let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let forward = with_keys(&keys);
        keys.reverse();
        assert_eq!(with_keys(&keys), forward);
    }

    /// `ArrowWriter`'s bytes for `batch` with `props`: the reference the parallel
    /// encoder must reproduce.
    fn arrow_writer_bytes(batch: &RecordBatch, props: WriterProperties) -> Vec<u8> {
        let mut writer = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).unwrap();
        writer.write(batch).unwrap();
        writer.into_inner().unwrap()
    }

    /// A table with every column type the tool writes (integers, floats with NaN, -0.0
    /// and infinities, repeated and distinct strings, booleans, nulls), with schema and
    /// field metadata, from a seeded generator.
    fn mixed_table(rows: usize, seed: u64) -> RecordBatch {
        use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
        use arrow::datatypes::{DataType, Field};
        let mut x = seed;
        let mut next = move || {
            // SplitMix64.
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let specials = [f64::NAN, -0.0, 0.0, f64::INFINITY, f64::NEG_INFINITY];
        let mut ints = Vec::new();
        let (mut floats, mut nullable, mut names, mut heads, mut flags) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for i in 0..rows {
            let r = next();
            ints.push(i as i64 * 7 - (r % 1000) as i64);
            floats.push(if r % 97 == 0 {
                specials[(r >> 8) as usize % specials.len()]
            } else {
                (r >> 11) as f64 * 2f64.powi(-40) - 3000.0
            });
            nullable.push((r % 5 != 0).then_some((r >> 20) as f64 / 7.0));
            names.push(["newton", "constant", "diminishing"][(r >> 3) as usize % 3]);
            heads.push(format!("{:016x}{:016x}", next(), r));
            flags.push(r & 1 == 1);
        }
        let field = |name: &str, t: DataType, nullable: bool| {
            Field::new(name, t, nullable).with_metadata(std::collections::HashMap::from([(
                "unit".to_string(),
                "MW".to_string(),
            )]))
        };
        let schema = Schema::new(vec![
            field("run", DataType::Int64, false),
            field("price", DataType::Float64, false),
            field("maybe", DataType::Float64, true),
            field("rule", DataType::Utf8, false),
            field("head", DataType::Utf8, false),
            field("converged", DataType::Boolean, false),
        ])
        .with_metadata(std::collections::HashMap::from([(
            "p2pmarket.engine".to_string(),
            "test".to_string(),
        )]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ints)),
            Arc::new(Float64Array::from(floats)),
            Arc::new(Float64Array::from(nullable)),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(heads)),
            Arc::new(BooleanArray::from(flags)),
        ];
        RecordBatch::try_new(Arc::new(schema), columns).unwrap()
    }

    #[test]
    fn parallel_encoding_writes_arrow_writers_bytes() {
        let threads = |n: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        for (rows, group_rows) in [(0, None), (1, None), (30_000, None), (30_000, Some(4_096))] {
            let batch = mixed_table(rows, 17 + rows as u64);
            let props = || {
                let p = writer_properties(&batch.schema());
                match group_rows {
                    Some(n) => p
                        .into_builder()
                        .set_max_row_group_row_count(Some(n))
                        .build(),
                    None => p,
                }
            };
            let reference = arrow_writer_bytes(&batch, props());
            for n in [1, 3] {
                let bytes = threads(n)
                    .install(|| encode_parquet(Vec::new(), &batch, props()))
                    .unwrap();
                assert!(
                    bytes == reference,
                    "{rows} rows, row groups of {group_rows:?}, {n} threads: {} bytes, \
                     ArrowWriter {}",
                    bytes.len(),
                    reference.len()
                );
            }
            // The split into row groups is ArrowWriter's, and the data reads back.
            let meta =
                ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(reference)).unwrap();
            let groups = meta.metadata().num_row_groups();
            assert_eq!(groups, rows.div_ceil(group_rows.unwrap_or(1 << 20)));
            if rows > 0 {
                let back: Vec<RecordBatch> = meta.build().unwrap().map(|b| b.unwrap()).collect();
                let back = concat_batches(&batch.schema(), &back).unwrap();
                assert_eq!(back.num_rows(), rows);
                assert_eq!(back.columns(), batch.columns());
            }
        }
    }

    #[test]
    fn failed_parquet_write_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        // The target is an existing directory: the rename fails after the data is written.
        let path = dir.path().join("taken.parquet");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("x"), b"x").unwrap();
        let batch = hourly_table(&day(false)).unwrap();
        assert!(matches!(
            write_parquet(&path, &batch),
            Err(Error::Io { .. })
        ));
        assert_eq!(entries(dir.path()), vec!["taken.parquet"]);
    }

    #[test]
    fn dir_sink_writes_atomically_named_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = DirSink::new(dir.path());
        sink.write_table("hourly", &hourly_table(&day(true)).unwrap())
            .unwrap();
        sink.write_bytes("a.json", b"{}").unwrap();
        sink.write_rendered("b.txt", &mut |p: &Path| {
            assert!(p.to_string_lossy().ends_with(".tmp.txt"));
            std::fs::write(p, b"rendered").map_err(|e| Error::io("test", e))
        })
        .unwrap();
        let failed = sink.write_rendered("c.png", &mut |p: &Path| {
            std::fs::write(p, b"partial").map_err(|e| Error::io("test", e))?;
            Err(Error::Output {
                context: "test".into(),
                message: "renderer failed".into(),
            })
        });
        assert!(failed.is_err());
        assert_eq!(sink.written(), ["hourly.parquet", "a.json", "b.txt"]);
        assert_eq!(
            entries(dir.path()),
            vec!["a.json", "b.txt", "hourly.parquet"]
        );
        assert_eq!(
            std::fs::read(dir.path().join("b.txt")).unwrap(),
            b"rendered"
        );
    }

    #[test]
    fn sinks_reject_path_like_names() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = DirSink::new(dir.path());
        for bad in ["", "..", "../x", "a/b", "x.tmp"] {
            assert!(sink.write_bytes(bad, b"x").is_err(), "{bad:?}");
        }
        assert!(
            sink.write_table("../up", &hourly_table(&day(false)).unwrap())
                .is_err()
        );
        assert!(MemorySink::new().write_bytes("a/b", b"x").is_err());
        assert!(entries(dir.path()).is_empty());
    }

    #[test]
    fn memory_sink_keeps_tables_bytes_and_rendered_files() {
        let mut sink = MemorySink::new();
        let batch = hourly_table(&day(true)).unwrap();
        sink.write_table("hourly", &batch).unwrap();
        sink.write_bytes("x.json", b"[1]").unwrap();
        let mut scratch = PathBuf::new();
        sink.write_rendered("y.png", &mut |p: &Path| {
            scratch = p.to_path_buf();
            std::fs::write(p, b"png").map_err(|e| Error::io("test", e))
        })
        .unwrap();
        assert_eq!(sink.tables["hourly"], batch);
        assert_eq!(sink.files["x.json"], b"[1]");
        assert_eq!(sink.files["y.png"], b"png");
        assert!(scratch.to_string_lossy().ends_with(".png"));
        assert!(!scratch.exists(), "scratch file left behind");
    }
}
