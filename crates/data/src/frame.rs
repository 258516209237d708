//! Typed columnar tables for analysis (drift, expectations): each column is either numbers
//! (`f64`, NaN = missing) or categories (dictionary codes), read straight from Parquet column
//! chunks or parsed from CSV without building a string per cell. A column is numeric when every
//! present cell is a number.

use crate::repo::DataError;
use std::collections::HashMap;
use std::path::Path;

/// Code of a missing categorical cell.
pub const MISSING: u32 = u32::MAX;

#[derive(Debug, Clone, PartialEq)]
pub enum ColumnData {
    Numeric(Vec<f64>),
    /// Codes into `levels`; [`MISSING`] for a missing cell.
    Categorical {
        codes: Vec<u32>,
        levels: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub name: String,
    pub data: ColumnData,
}

impl Column {
    pub fn len(&self) -> usize {
        match &self.data {
            ColumnData::Numeric(v) => v.len(),
            ColumnData::Categorical { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cell `i` as text (numbers in their shortest form), `None` when missing.
    pub fn text(&self, i: usize) -> Option<String> {
        match &self.data {
            ColumnData::Numeric(v) => (!v[i].is_nan()).then(|| format_number(v[i])),
            ColumnData::Categorical { codes, levels } => {
                (codes[i] != MISSING).then(|| levels[codes[i] as usize].clone())
            }
        }
    }

    /// The cells as text (numbers formatted), for a column that must be compared as categories.
    pub fn to_categorical(&self) -> Column {
        match &self.data {
            ColumnData::Categorical { .. } => self.clone(),
            ColumnData::Numeric(v) => {
                let mut b = CategoryBuilder::default();
                let codes = v
                    .iter()
                    .map(|x| {
                        if x.is_nan() {
                            MISSING
                        } else {
                            b.code(&format_number(*x))
                        }
                    })
                    .collect();
                Column {
                    name: self.name.clone(),
                    data: ColumnData::Categorical {
                        codes,
                        levels: b.levels,
                    },
                }
            }
        }
    }
}

/// Shortest text of a number (`3` for 3.0, `0.1` for 0.1).
pub fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[derive(Default)]
struct CategoryBuilder {
    index: HashMap<String, u32>,
    levels: Vec<String>,
}

impl CategoryBuilder {
    fn code(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.index.get(s) {
            return c;
        }
        let c = self.levels.len() as u32;
        self.levels.push(s.to_owned());
        self.index.insert(s.to_owned(), c);
        c
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Frame {
    pub columns: Vec<Column>,
}

impl Frame {
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Splits the rows by a key computed from a text column's value (e.g. the month of a date),
    /// keeping row order within each part. `None` when the column is missing or numeric.
    pub fn partition_by(
        &self,
        column: &str,
        key: impl Fn(&str) -> String,
    ) -> Option<std::collections::BTreeMap<String, Frame>> {
        let ColumnData::Categorical { codes, levels } = &self.column(column)?.data else {
            return None;
        };
        let level_keys: Vec<String> = levels.iter().map(|l| key(l)).collect();
        let mut parts = std::collections::BTreeMap::<String, Vec<bool>>::new();
        for (row, &c) in codes.iter().enumerate() {
            if c == MISSING {
                continue;
            }
            let mask = parts
                .entry(level_keys[c as usize].clone())
                .or_insert_with(|| vec![false; codes.len()]);
            mask[row] = true;
        }
        Some(
            parts
                .into_iter()
                .map(|(k, mask)| (k, self.filter_rows(&mask)))
                .collect(),
        )
    }

    /// The rows of `parts` one after the other; columns matched by name (a column missing from a
    /// part is missing there; numbers and text in one column make it text).
    pub fn concat(parts: &[Frame]) -> Frame {
        let mut names: Vec<String> = Vec::new();
        for p in parts {
            for c in &p.columns {
                if !names.contains(&c.name) {
                    names.push(c.name.clone());
                }
            }
        }
        let columns = names
            .into_iter()
            .map(|name| {
                let all_numeric = parts.iter().all(|p| {
                    p.column(&name)
                        .is_none_or(|c| matches!(c.data, ColumnData::Numeric(_)))
                });
                let data = if all_numeric {
                    let mut v = Vec::new();
                    for p in parts {
                        match p.column(&name).map(|c| &c.data) {
                            Some(ColumnData::Numeric(x)) => v.extend_from_slice(x),
                            _ => v.extend(std::iter::repeat_n(f64::NAN, p.rows())),
                        }
                    }
                    ColumnData::Numeric(v)
                } else {
                    let mut b = CategoryBuilder::default();
                    let mut codes = Vec::new();
                    for p in parts {
                        match p.column(&name).map(Column::to_categorical) {
                            Some(Column {
                                data: ColumnData::Categorical { codes: c, levels },
                                ..
                            }) => codes.extend(c.iter().map(|&k| {
                                if k == MISSING {
                                    MISSING
                                } else {
                                    b.code(&levels[k as usize])
                                }
                            })),
                            _ => codes.extend(std::iter::repeat_n(MISSING, p.rows())),
                        }
                    }
                    ColumnData::Categorical {
                        codes,
                        levels: b.levels,
                    }
                };
                Column { name, data }
            })
            .collect();
        Frame { columns }
    }

    /// Rows whose index passes `keep`, in order.
    pub fn filter_rows(&self, keep: &[bool]) -> Frame {
        let columns = self
            .columns
            .iter()
            .map(|c| Column {
                name: c.name.clone(),
                data: match &c.data {
                    ColumnData::Numeric(v) => ColumnData::Numeric(
                        v.iter()
                            .zip(keep)
                            .filter(|(_, k)| **k)
                            .map(|(x, _)| *x)
                            .collect(),
                    ),
                    ColumnData::Categorical { codes, levels } => ColumnData::Categorical {
                        codes: codes
                            .iter()
                            .zip(keep)
                            .filter(|(_, k)| **k)
                            .map(|(x, _)| *x)
                            .collect(),
                        levels: levels.clone(),
                    },
                },
            })
            .collect();
        Frame { columns }
    }
}

/// CSV text of a frame (header, then rows; missing cells empty; text quoted when needed).
pub fn to_csv(f: &Frame) -> String {
    let quote = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_owned()
        }
    };
    let mut out = f
        .columns
        .iter()
        .map(|c| quote(&c.name))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for i in 0..f.rows() {
        let cells: Vec<String> = f
            .columns
            .iter()
            .map(|c| match &c.data {
                ColumnData::Numeric(v) if v[i].is_nan() => String::new(),
                ColumnData::Numeric(v) => format!("{}", v[i]),
                ColumnData::Categorical { codes, levels } => {
                    if codes[i] == MISSING {
                        String::new()
                    } else {
                        quote(&levels[codes[i] as usize])
                    }
                }
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// A frame as one Parquet file: numbers as optional DOUBLE, text as optional UTF-8.
pub fn to_parquet(f: &Frame) -> Result<Vec<u8>, String> {
    use parquet::basic::{ConvertedType, Repetition, Type as Physical};
    use parquet::data_type::{ByteArray, ByteArrayType, DoubleType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::types::Type;
    use std::sync::Arc;
    let err = |e: parquet::errors::ParquetError| e.to_string();
    let fields = f
        .columns
        .iter()
        .map(|c| {
            let b = match c.data {
                ColumnData::Numeric(_) => Type::primitive_type_builder(&c.name, Physical::DOUBLE),
                ColumnData::Categorical { .. } => {
                    Type::primitive_type_builder(&c.name, Physical::BYTE_ARRAY)
                        .with_converted_type(ConvertedType::UTF8)
                }
            };
            b.with_repetition(Repetition::OPTIONAL)
                .build()
                .map(Arc::new)
                .map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let schema = Arc::new(
        Type::group_type_builder("frame")
            .with_fields(fields)
            .build()
            .map_err(err)?,
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build(),
    );
    let mut w = SerializedFileWriter::new(Vec::new(), schema, props).map_err(err)?;
    let mut rg = w.next_row_group().map_err(err)?;
    let mut i = 0;
    while let Some(mut col) = rg.next_column().map_err(err)? {
        match &f.columns[i].data {
            ColumnData::Numeric(v) => {
                let vals: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
                let defs: Vec<i16> = v.iter().map(|x| i16::from(!x.is_nan())).collect();
                col.typed::<DoubleType>()
                    .write_batch(&vals, Some(&defs), None)
                    .map_err(err)?;
            }
            ColumnData::Categorical { codes, levels } => {
                let vals: Vec<ByteArray> = codes
                    .iter()
                    .filter(|&&c| c != MISSING)
                    .map(|&c| ByteArray::from(levels[c as usize].as_str()))
                    .collect();
                let defs: Vec<i16> = codes.iter().map(|&c| i16::from(c != MISSING)).collect();
                col.typed::<ByteArrayType>()
                    .write_batch(&vals, Some(&defs), None)
                    .map_err(err)?;
            }
        }
        col.close().map_err(err)?;
        i += 1;
    }
    rg.close().map_err(err)?;
    w.into_inner().map_err(err)
}

fn frame_err(path: &Path, m: impl std::fmt::Display) -> DataError {
    DataError::Pointer {
        file: path.to_owned(),
        message: m.to_string(),
    }
}

/// Reads a `.parquet` file, or anything else as CSV with a header row.
pub fn read_frame(path: &Path) -> Result<Frame, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        read_parquet_frame(path, bytes)
    } else {
        let text = String::from_utf8(bytes).map_err(|_| frame_err(path, "not UTF-8 text"))?;
        parse_csv_frame(&text).map_err(|m| frame_err(path, m))
    }
}

fn is_missing(cell: &str) -> bool {
    matches!(
        cell,
        "" | "NA" | "N/A" | "NaN" | "nan" | "null" | "NULL" | "None"
    )
}

/// Splits one CSV record (RFC 4180 quoting) into `out`.
fn split_record<'a>(line: &'a str, out: &mut Vec<std::borrow::Cow<'a, str>>) {
    use std::borrow::Cow;
    out.clear();
    if !line.contains('"') {
        out.extend(line.split(',').map(|c| Cow::Borrowed(c.trim())));
        return;
    }
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cell.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(Cow::Owned(std::mem::take(&mut cell).trim().to_owned())),
            c => cell.push(c),
        }
    }
    out.push(Cow::Owned(cell.trim().to_owned()));
}

/// Parses CSV text with a header row into typed columns.
pub fn parse_csv_frame(text: &str) -> Result<Frame, String> {
    let mut lines = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty());
    let header = lines.next().ok_or("an empty file")?;
    let mut cells = Vec::new();
    split_record(header, &mut cells);
    let names: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
    let width = names.len();
    let mut raw: Vec<Vec<std::borrow::Cow<'_, str>>> = vec![Vec::new(); width];
    for (i, line) in lines.enumerate() {
        split_record(line, &mut cells);
        if cells.len() != width {
            return Err(format!(
                "row {} has {} fields, the header has {width}",
                i + 2,
                cells.len()
            ));
        }
        for (col, cell) in raw.iter_mut().zip(cells.drain(..)) {
            col.push(cell);
        }
    }
    let columns = std::thread::scope(|s| {
        let handles: Vec<_> = names
            .into_iter()
            .zip(raw)
            .map(|(name, cells)| s.spawn(move || typed_column(name, &cells)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| "a column parser panicked".to_owned()))
            .collect::<Result<Vec<_>, _>>()
    })?;
    Ok(Frame { columns })
}

fn typed_column(name: String, cells: &[std::borrow::Cow<'_, str>]) -> Column {
    let mut numbers = Vec::with_capacity(cells.len());
    let mut numeric = true;
    for c in cells {
        if is_missing(c) {
            numbers.push(f64::NAN);
        } else if let Ok(x) = c.parse::<f64>() {
            numbers.push(x);
        } else {
            numeric = false;
            break;
        }
    }
    if numeric {
        return Column {
            name,
            data: ColumnData::Numeric(numbers),
        };
    }
    let mut b = CategoryBuilder::default();
    let codes = cells
        .iter()
        .map(|c| if is_missing(c) { MISSING } else { b.code(c) })
        .collect();
    Column {
        name,
        data: ColumnData::Categorical {
            codes,
            levels: b.levels,
        },
    }
}

/// A column being read: name, numbers, or categories and their codes.
type Building = (String, Vec<f64>, Option<CategoryBuilder>, Vec<u32>);

/// Reads Parquet bytes (`path` only names them in errors).
pub fn read_parquet_frame(path: &Path, bytes: Vec<u8>) -> Result<Frame, DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader =
        SerializedFileReader::new(bytes::Bytes::from(bytes)).map_err(|e| frame_err(path, e))?;
    let groups = 0..reader.num_row_groups();
    groups_to_frame(path, &reader, groups)
}

/// Calls `f` with consecutive chunks of a table — one Parquet row group, or `rows` CSV lines, at
/// a time — so a table of any size is processed in memory bounded by one chunk.
pub fn for_each_chunk(
    path: &Path,
    rows: usize,
    mut f: impl FnMut(Frame) -> Result<(), String>,
) -> Result<(), String> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use std::io::BufRead;
    let open = || std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()));
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        let reader =
            SerializedFileReader::new(open()?).map_err(|e| format!("{}: {e}", path.display()))?;
        for g in 0..reader.num_row_groups() {
            f(groups_to_frame(path, &reader, g..g + 1).map_err(|e| e.to_string())?)?;
        }
        return Ok(());
    }
    let mut lines = std::io::BufReader::new(open()?).lines();
    let header = match lines.next() {
        Some(h) => h.map_err(|e| e.to_string())?,
        None => return Err(format!("{}: an empty file", path.display())),
    };
    let mut chunk = header.clone() + "\n";
    let mut n = 0;
    for line in lines {
        let line = line.map_err(|e| e.to_string())?;
        if line.trim().is_empty() {
            continue;
        }
        chunk.push_str(&line);
        chunk.push('\n');
        n += 1;
        if n == rows.max(1) {
            f(parse_csv_frame(&chunk).map_err(|e| format!("{}: {e}", path.display()))?)?;
            chunk = header.clone() + "\n";
            n = 0;
        }
    }
    if n > 0 {
        f(parse_csv_frame(&chunk).map_err(|e| format!("{}: {e}", path.display()))?)?;
    }
    Ok(())
}

/// The rows of some row groups as one frame.
fn groups_to_frame<R: parquet::file::reader::ChunkReader + 'static>(
    path: &Path,
    reader: &parquet::file::serialized_reader::SerializedFileReader<R>,
    groups: std::ops::Range<usize>,
) -> Result<Frame, DataError> {
    use parquet::column::reader::ColumnReader;
    use parquet::file::reader::FileReader;
    let err = |e: parquet::errors::ParquetError| frame_err(path, e);
    let schema = reader.metadata().file_metadata().schema_descr_ptr();
    let mut columns: Vec<Building> = (0..schema.num_columns())
        .map(|i| {
            (
                schema.column(i).name().to_owned(),
                Vec::new(),
                None,
                Vec::new(),
            )
        })
        .collect();
    const BATCH: usize = 64 * 1024;
    for g in groups {
        let group = reader.get_row_group(g).map_err(err)?;
        for (i, col) in columns.iter_mut().enumerate() {
            let max_def = schema.column(i).max_def_level();
            // Timestamps become epoch seconds (exact to the microsecond in an f64).
            let ts_divisor = match schema.column(i).logical_type_ref() {
                Some(parquet::basic::LogicalType::Timestamp(t)) => match t.unit {
                    parquet::basic::TimeUnit::MILLIS => 1e3,
                    parquet::basic::TimeUnit::MICROS => 1e6,
                    parquet::basic::TimeUnit::NANOS => 1e9,
                },
                _ => 1.0,
            };
            let mut defs: Vec<i16> = Vec::new();
            // Pushes one batch: `present` values placed where the definition level says so.
            macro_rules! numeric {
                ($r:expr, $conv:expr) => {{
                    let mut r = $r;
                    loop {
                        let mut vals = Vec::new();
                        defs.clear();
                        let (records, _, _) = r
                            .read_records(BATCH, Some(&mut defs), None, &mut vals)
                            .map_err(err)?;
                        if records == 0 {
                            break;
                        }
                        let mut it = vals.into_iter();
                        for k in 0..records {
                            let present = max_def == 0 || defs.get(k) == Some(&max_def);
                            let v = if present { it.next().map($conv) } else { None };
                            col.1.push(v.unwrap_or(f64::NAN));
                        }
                    }
                }};
            }
            match group.get_column_reader(i).map_err(err)? {
                ColumnReader::DoubleColumnReader(r) => numeric!(r, |v: f64| v),
                ColumnReader::FloatColumnReader(r) => numeric!(r, |v: f32| v as f64),
                ColumnReader::Int32ColumnReader(r) => numeric!(r, |v: i32| v as f64),
                ColumnReader::Int64ColumnReader(r) => {
                    numeric!(r, |v: i64| if ts_divisor == 1.0 {
                        v as f64
                    } else {
                        // Whole seconds and the fraction apart, so nanoseconds keep precision.
                        let d = ts_divisor as i64;
                        v.div_euclid(d) as f64 + v.rem_euclid(d) as f64 / ts_divisor
                    })
                }
                ColumnReader::BoolColumnReader(r) => {
                    numeric!(r, |v: bool| if v { 1.0 } else { 0.0 })
                }
                ColumnReader::ByteArrayColumnReader(mut r) => {
                    let b = col.2.get_or_insert_with(CategoryBuilder::default);
                    loop {
                        let mut vals = Vec::new();
                        defs.clear();
                        let (records, _, _) = r
                            .read_records(BATCH, Some(&mut defs), None, &mut vals)
                            .map_err(err)?;
                        if records == 0 {
                            break;
                        }
                        let mut it = vals.into_iter();
                        for k in 0..records {
                            let present = max_def == 0 || defs.get(k) == Some(&max_def);
                            let code = match it.next().filter(|_| present) {
                                Some(v) => b.code(&String::from_utf8_lossy(v.data())),
                                None => MISSING,
                            };
                            col.3.push(code);
                        }
                    }
                }
                _ => {
                    return Err(frame_err(
                        path,
                        format!("column {} has an unsupported Parquet type", col.0),
                    ));
                }
            }
        }
    }
    Ok(Frame {
        columns: columns
            .into_iter()
            .map(|(name, nums, cats, codes)| Column {
                name,
                data: match cats {
                    Some(b) => ColumnData::Categorical {
                        codes,
                        levels: b.levels,
                    },
                    None => ColumnData::Numeric(nums),
                },
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_csv_and_parquet() {
        let f = parse_csv_frame("x,k\n1.5,a\n,\"b, c\"\n3,\n").unwrap();
        assert_eq!(parse_csv_frame(&to_csv(&f)).unwrap().rows(), 3);
        let back = read_parquet_frame(Path::new("f.parquet"), to_parquet(&f).unwrap()).unwrap();
        assert_eq!(back.column("k"), f.column("k"));
        match &back.column("x").unwrap().data {
            ColumnData::Numeric(v) => assert!(v[0] == 1.5 && v[1].is_nan() && v[2] == 3.0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn frames_concatenate_by_column_name() {
        let a = parse_csv_frame("x,k\n1,a\n2,b\n").unwrap();
        let b = parse_csv_frame("k,y\nb,5\nc,6\n").unwrap();
        let f = Frame::concat(&[a, b]);
        assert_eq!(f.rows(), 4);
        match &f.column("x").unwrap().data {
            ColumnData::Numeric(v) => assert!(v[0] == 1.0 && v[1] == 2.0 && v[2].is_nan()),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.column("k").unwrap().data,
            ColumnData::Categorical {
                codes: vec![0, 1, 1, 2],
                levels: vec!["a".into(), "b".into(), "c".into()]
            }
        );
    }

    #[test]
    fn csv_columns_are_typed_and_missing_cells_kept() {
        let f = parse_csv_frame("a,b,c\n1,x,\n2.5,\"y, z\",3\nNA,x,4\n").unwrap();
        assert_eq!(f.rows(), 3);
        match &f.column("a").unwrap().data {
            ColumnData::Numeric(v) => {
                assert_eq!(v[..2], [1.0, 2.5]);
                assert!(v[2].is_nan());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.column("b").unwrap().data,
            ColumnData::Categorical {
                codes: vec![0, 1, 0],
                levels: vec!["x".into(), "y, z".into()]
            }
        );
        assert!(matches!(
            f.column("c").unwrap().data,
            ColumnData::Numeric(_)
        ));
        assert!(parse_csv_frame("a,b\n1\n").unwrap_err().contains("row 2"));
    }
}
