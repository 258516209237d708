//! Reading tabular files (CSV and Parquet) into a header and text rows, for training.

use crate::repo::DataError;
use std::path::Path;

/// A table as text cells (empty = missing), with its column names.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn table_err(path: &Path, m: impl std::fmt::Display) -> DataError {
    DataError::Pointer {
        file: path.to_owned(),
        message: m.to_string(),
    }
}

/// Reads `.parquet` files with the Parquet reader and anything else as comma-separated text.
pub fn read_table(path: &Path) -> Result<Table, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_table(path, bytes)
}

/// [`read_table`] on bytes already read (`path` names the file and picks the format).
pub fn parse_table(path: &Path, bytes: Vec<u8>) -> Result<Table, DataError> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    {
        return read_parquet(path, bytes);
    }
    let text = String::from_utf8(bytes).map_err(|_| table_err(path, "not UTF-8 text"))?;
    let mut lines = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty());
    let columns: Vec<String> = lines
        .next()
        .ok_or_else(|| table_err(path, "an empty file"))?
        .split(',')
        .map(|c| c.trim().to_owned())
        .collect();
    let rows = lines
        .map(|l| l.split(',').map(|c| c.trim().to_owned()).collect())
        .collect();
    Ok(Table { columns, rows })
}

fn read_parquet(path: &Path, bytes: Vec<u8>) -> Result<Table, DataError> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::Field;
    let reader =
        SerializedFileReader::new(bytes::Bytes::from(bytes)).map_err(|e| table_err(path, e))?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let columns: Vec<String> = schema
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let mut rows = Vec::new();
    for row in reader.get_row_iter(None).map_err(|e| table_err(path, e))? {
        let row = row.map_err(|e| table_err(path, e))?;
        let cells: Vec<String> = row
            .get_column_iter()
            .map(|(_, f)| match f {
                Field::Null => String::new(),
                Field::Bool(b) => b.to_string(),
                Field::Byte(v) => v.to_string(),
                Field::Short(v) => v.to_string(),
                Field::Int(v) => v.to_string(),
                Field::Long(v) => v.to_string(),
                Field::UByte(v) => v.to_string(),
                Field::UShort(v) => v.to_string(),
                Field::UInt(v) => v.to_string(),
                Field::ULong(v) => v.to_string(),
                Field::Float(v) => v.to_string(),
                Field::Double(v) => v.to_string(),
                Field::Str(s) => s.clone(),
                other => other.to_string(),
            })
            .collect();
        rows.push(cells);
    }
    Ok(Table { columns, rows })
}
