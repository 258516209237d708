//! A small Redis client (RESP2 over one TCP connection, pipelined) and the online store on it.
//! A view's rows live in a hash per snapshot generation (`{prefix}:{view}:g{n}`, field = entity
//! key, value = JSON); `{prefix}:{view}:current` names the generation readers use. Materialising
//! writes a new generation, then switches `current` with one SET and unlinks the old hash, so an
//! interrupted materialisation leaves readers on the previous complete snapshot.

use features::online::{OnlineRow, OnlineStore};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Simple(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

pub struct Redis {
    conn: Mutex<BufReader<TcpStream>>,
    prefix: String,
}

fn encode(cmd: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", cmd.len()).as_bytes());
    for a in cmd {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

async fn read_reply(r: &mut BufReader<TcpStream>) -> Result<Reply, String> {
    let mut line = String::new();
    if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
        return Err("redis closed the connection".into());
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line.split_at(1.min(line.len()));
    let num = || {
        rest.parse::<i64>()
            .map_err(|_| format!("bad redis reply {line:?}"))
    };
    match kind {
        "+" => Ok(Reply::Simple(rest.to_owned())),
        "-" => Err(format!("redis: {rest}")),
        ":" => Ok(Reply::Int(num()?)),
        "$" => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Bulk(None));
            }
            let mut buf = vec![0; n as usize + 2];
            r.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
            buf.truncate(n as usize);
            Ok(Reply::Bulk(Some(buf)))
        }
        "*" => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Array(None));
            }
            let mut items = Vec::with_capacity(n as usize);
            for _ in 0..n {
                items.push(Box::pin(read_reply(r)).await?);
            }
            Ok(Reply::Array(Some(items)))
        }
        _ => Err(format!("bad redis reply {line:?}")),
    }
}

impl Redis {
    /// Connects to `redis://host:port[/db]`; keys are namespaced under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Redis, String> {
        let rest = url
            .strip_prefix("redis://")
            .ok_or_else(|| format!("{url} is not a redis:// URL"))?;
        let (addr, db) = rest.split_once('/').unwrap_or((rest, ""));
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot reach redis at {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let r = Redis {
            conn: Mutex::new(BufReader::new(stream)),
            prefix: prefix.to_owned(),
        };
        if !db.is_empty() {
            r.pipeline(&[vec![b"SELECT".to_vec(), db.as_bytes().to_vec()]])
                .await?;
        }
        Ok(r)
    }

    /// Sends every command, then reads every reply (one round trip).
    pub async fn pipeline(&self, cmds: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, String> {
        let mut buf = Vec::new();
        for c in cmds {
            let parts: Vec<&[u8]> = c.iter().map(Vec::as_slice).collect();
            encode(&parts, &mut buf);
        }
        let mut conn = self.conn.lock().await;
        conn.get_mut()
            .write_all(&buf)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = Vec::with_capacity(cmds.len());
        let mut first_err = None;
        for _ in cmds {
            match read_reply(&mut conn).await {
                Ok(r) => out.push(r),
                // Keep reading so the connection stays in step; report the first error.
                Err(e) if e.starts_with("redis: ") => {
                    first_err.get_or_insert(e);
                    out.push(Reply::Bulk(None));
                }
                Err(e) => return Err(e),
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// The namespace every key of this connection lives under.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, view: &str, suffix: &str) -> Vec<u8> {
        format!("{}:{view}:{suffix}", self.prefix).into_bytes()
    }
}

fn cmd(parts: &[&[u8]]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.to_vec()).collect()
}

#[async_trait::async_trait]
impl OnlineStore for Redis {
    async fn replace_view(&self, view: &str, rows: &[(String, OnlineRow)]) -> Result<(), String> {
        let next = self
            .pipeline(&[cmd(&[b"INCR", &self.key(view, "generation")])])
            .await?;
        let Some(Reply::Int(g)) = next.into_iter().next() else {
            return Err("redis: INCR did not return a number".into());
        };
        let hash = self.key(view, &format!("g{g}"));
        for chunk in rows.chunks(1000) {
            let mut c: Vec<Vec<u8>> = vec![b"HSET".to_vec(), hash.clone()];
            for (k, row) in chunk {
                c.push(k.as_bytes().to_vec());
                c.push(serde_json::to_vec(row).map_err(|e| e.to_string())?);
            }
            self.pipeline(&[c]).await?;
        }
        // The switch: readers move to the complete new generation at once.
        let old = self
            .pipeline(&[cmd(&[
                b"SET",
                &self.key(view, "current"),
                g.to_string().as_bytes(),
                b"GET",
            ])])
            .await?;
        if let Some(Reply::Bulk(Some(prev))) = old.first() {
            let prev = String::from_utf8_lossy(prev).into_owned();
            self.pipeline(&[cmd(&[b"UNLINK", &self.key(view, &format!("g{prev}"))])])
                .await?;
        }
        Ok(())
    }

    async fn read_all(&self, view: &str) -> Result<Vec<(String, OnlineRow)>, String> {
        let g = self.version(view).await?;
        if g == 0 {
            return Ok(Vec::new());
        }
        let reply = self
            .pipeline(&[cmd(&[b"HGETALL", &self.key(view, &format!("g{g}"))])])
            .await?;
        let Some(Reply::Array(Some(items))) = reply.into_iter().next() else {
            return Err("redis: HGETALL did not return a list".into());
        };
        let mut out = Vec::with_capacity(items.len() / 2);
        let mut it = items.into_iter();
        while let (Some(Reply::Bulk(Some(k))), Some(Reply::Bulk(Some(v)))) = (it.next(), it.next())
        {
            out.push((
                String::from_utf8_lossy(&k).into_owned(),
                serde_json::from_slice(&v).map_err(|e| e.to_string())?,
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn version(&self, view: &str) -> Result<i64, String> {
        let cur = self
            .pipeline(&[cmd(&[b"GET", &self.key(view, "current")])])
            .await?;
        Ok(match cur.into_iter().next() {
            Some(Reply::Bulk(Some(g))) => String::from_utf8_lossy(&g).parse().unwrap_or(0),
            _ => 0,
        })
    }

    async fn read(&self, view: &str, keys: &[String]) -> Result<Vec<Option<OnlineRow>>, String> {
        let cur = self
            .pipeline(&[cmd(&[b"GET", &self.key(view, "current")])])
            .await?;
        let Some(Reply::Bulk(Some(g))) = cur.into_iter().next() else {
            return Ok(vec![None; keys.len()]);
        };
        let g = String::from_utf8_lossy(&g).into_owned();
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut c: Vec<Vec<u8>> = vec![b"HMGET".to_vec(), self.key(view, &format!("g{g}"))];
        c.extend(keys.iter().map(|k| k.as_bytes().to_vec()));
        let reply = self.pipeline(&[c]).await?;
        let Some(Reply::Array(Some(items))) = reply.into_iter().next() else {
            return Err("redis: HMGET did not return a list".into());
        };
        items
            .into_iter()
            .map(|i| match i {
                Reply::Bulk(Some(b)) => serde_json::from_slice(&b)
                    .map(Some)
                    .map_err(|e| e.to_string()),
                _ => Ok(None),
            })
            .collect()
    }
}
