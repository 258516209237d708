//! The write-ahead log of a collection: one record per acknowledged write (a whole upsert or
//! delete batch), framed as `len u32 | crc32 u32 | body`, appended and fsynced before the write
//! is applied or acknowledged. Recovery replays records after the snapshot's sequence number and
//! cuts the file at the first torn or corrupt record (a crash mid-append), so a batch is either
//! entirely there or entirely absent.

use crate::collection::{Point, PointId};
use serde_json::{Map, Value};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

pub(crate) enum Record {
    Upsert(Vec<Point>),
    Delete(Vec<PointId>),
}

pub(crate) struct Wal {
    file: File,
    pub(crate) bytes: u64,
}

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32 (IEEE), as zlib computes it.
pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

pub(crate) fn put_id(buf: &mut Vec<u8>, id: &PointId) {
    match id {
        PointId::Num(n) => {
            buf.push(0);
            buf.extend_from_slice(&n.to_le_bytes());
        }
        PointId::Str(s) => {
            buf.push(1);
            buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

/// A cursor over a byte slice that fails instead of panicking on truncation.
pub(crate) struct Cursor<'a>(pub(crate) &'a [u8]);

impl Cursor<'_> {
    pub(crate) fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub(crate) fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub(crate) fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub(crate) fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub(crate) fn id(&mut self) -> Option<PointId> {
        match self.u8()? {
            0 => Some(PointId::Num(self.u64()?)),
            1 => {
                let n = self.u32()? as usize;
                Some(PointId::Str(
                    String::from_utf8(self.take(n)?.to_vec()).ok()?,
                ))
            }
            _ => None,
        }
    }
    pub(crate) fn payload(&mut self) -> Option<Map<String, Value>> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        if bytes.is_empty() {
            return Some(Map::new());
        }
        serde_json::from_slice(bytes).ok()
    }
}

pub(crate) fn put_payload(buf: &mut Vec<u8>, payload: &Map<String, Value>) {
    if payload.is_empty() {
        buf.extend_from_slice(&0u32.to_le_bytes());
        return;
    }
    // Written by hand: serialising a map with string keys cannot fail, and this says so.
    let mut json = String::from("{");
    for (i, (k, v)) in payload.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&Value::String(k.clone()).to_string());
        json.push(':');
        json.push_str(&v.to_string());
    }
    json.push('}');
    buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
    buf.extend_from_slice(json.as_bytes());
}

fn encode(seq: u64, record: &Record) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&seq.to_le_bytes());
    match record {
        Record::Upsert(points) => {
            body.push(1);
            body.extend_from_slice(&(points.len() as u32).to_le_bytes());
            for p in points {
                put_id(&mut body, &p.id);
                body.extend_from_slice(&(p.vector.len() as u32).to_le_bytes());
                for x in &p.vector {
                    body.extend_from_slice(&x.to_le_bytes());
                }
                put_payload(&mut body, &p.payload);
            }
        }
        Record::Delete(ids) => {
            body.push(2);
            body.extend_from_slice(&(ids.len() as u32).to_le_bytes());
            for id in ids {
                put_id(&mut body, id);
            }
        }
    }
    let mut framed = Vec::with_capacity(body.len() + 8);
    framed.extend_from_slice(&(body.len() as u32).to_le_bytes());
    framed.extend_from_slice(&crc32(&body).to_le_bytes());
    framed.extend_from_slice(&body);
    framed
}

fn decode(body: &[u8]) -> Option<(u64, Record)> {
    let mut c = Cursor(body);
    let seq = c.u64()?;
    let record = match c.u8()? {
        1 => {
            let n = c.u32()? as usize;
            let mut points = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                let id = c.id()?;
                let dim = c.u32()? as usize;
                let raw = c.take(dim * 4)?;
                let vector = raw
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                let payload = c.payload()?;
                points.push(Point {
                    id,
                    vector,
                    payload,
                });
            }
            Record::Upsert(points)
        }
        2 => {
            let n = c.u32()? as usize;
            let mut ids = Vec::with_capacity(n.min(1 << 16));
            for _ in 0..n {
                ids.push(c.id()?);
            }
            Record::Delete(ids)
        }
        _ => return None,
    };
    c.0.is_empty().then_some((seq, record))
}

impl Wal {
    /// Opens (creating) the log, calls `apply` for each intact record in order, and truncates a
    /// torn tail so the next append starts on a record boundary.
    pub(crate) fn open(path: &Path, mut apply: impl FnMut(u64, Record)) -> io::Result<Wal> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        let mut reader = BufReader::new(&file);
        let mut good: u64 = 0;
        loop {
            let mut head = [0u8; 8];
            if reader.read_exact(&mut head).is_err() {
                break;
            }
            let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
            if len > 1 << 30 {
                break;
            }
            let mut body = vec![0u8; len];
            if reader.read_exact(&mut body).is_err() || crc32(&body) != crc {
                break;
            }
            let Some((seq, record)) = decode(&body) else {
                break;
            };
            apply(seq, record);
            good += 8 + len as u64;
        }
        drop(reader);
        if file.seek(SeekFrom::End(0))? != good {
            file.set_len(good)?;
            file.sync_all()?;
        }
        Ok(Wal { file, bytes: good })
    }

    /// Appends one record and makes it durable.
    pub(crate) fn append(&mut self, seq: u64, record: &Record) -> io::Result<()> {
        let framed = encode(seq, record);
        self.file.write_all(&framed)?;
        self.file.sync_data()?;
        self.bytes += framed.len() as u64;
        Ok(())
    }

    /// Empties the log once a snapshot holds everything in it.
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn a_torn_tail_is_cut_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.log");
        let mut wal = Wal::open(&path, |_, _| unreachable!()).unwrap();
        let point = |i: u64| Point {
            id: PointId::Num(i),
            vector: vec![i as f32, 1.0],
            payload: json!({"i": i}).as_object().unwrap().clone(),
        };
        wal.append(1, &Record::Upsert(vec![point(1), point(2)]))
            .unwrap();
        wal.append(2, &Record::Delete(vec![PointId::Str("x".into())]))
            .unwrap();
        let good = wal.bytes;
        wal.append(3, &Record::Upsert(vec![point(3)])).unwrap();
        drop(wal);
        // A crash in the middle of the third append.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(good + 10).unwrap();
        drop(f);
        let mut seen = Vec::new();
        let wal = Wal::open(&path, |seq, r| {
            seen.push((
                seq,
                match r {
                    Record::Upsert(p) => p.len(),
                    Record::Delete(d) => d.len(),
                },
            ))
        })
        .unwrap();
        assert_eq!(seen, vec![(1, 2), (2, 1)]);
        assert_eq!(wal.bytes, good);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), good);
    }
}
