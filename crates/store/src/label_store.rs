//! `LabelStore` for SQLite and PostgreSQL: labels that arrive after predictions, keyed by model,
//! request id and row, which live performance joins to the prediction log.

use crate::db::{Db, map_err};
use monitor::performance::{Label, LabelStore, LabelValue};
use sqlx::Row;

fn err(e: sqlx::Error) -> String {
    map_err(e).to_string()
}

#[async_trait::async_trait]
impl LabelStore for Db {
    async fn put_labels(&self, model: &str, labels: &[Label]) -> Result<(), String> {
        let _g = self.write_guard().await;
        let mut tx = self.pool.begin().await.map_err(err)?;
        for l in labels {
            // A NULL of the other kind is written as a literal: sqlx's `Any` driver cannot
            // bind an untyped NULL to PostgreSQL.
            let (sql, value) = match &l.value {
                LabelValue::Number(x) => (
                    "INSERT INTO prediction_labels (model, request_id, row_index, label_num, label_text, created) \
                     VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT (model, request_id, row_index) \
                     DO UPDATE SET label_num = excluded.label_num, label_text = NULL, created = excluded.created",
                    Ok(*x),
                ),
                LabelValue::Class(s) => (
                    "INSERT INTO prediction_labels (model, request_id, row_index, label_num, label_text, created) \
                     VALUES ($1, $2, $3, NULL, $4, $5) ON CONFLICT (model, request_id, row_index) \
                     DO UPDATE SET label_num = NULL, label_text = excluded.label_text, created = excluded.created",
                    Err(s.clone()),
                ),
            };
            let q = sqlx::query(sql)
                .bind(model.to_owned())
                .bind(l.request_id.clone())
                .bind(l.row);
            let q = match value {
                Ok(x) => q.bind(x),
                Err(s) => q.bind(s),
            };
            q.bind(l.ts_ms).execute(&mut *tx).await.map_err(err)?;
        }
        tx.commit().await.map_err(err)
    }

    async fn labels_for(&self, model: &str, request_ids: &[String]) -> Result<Vec<Label>, String> {
        let mut out = Vec::new();
        for chunk in request_ids.chunks(500) {
            let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
            let sql = format!(
                "SELECT request_id, row_index, label_num, label_text, created FROM prediction_labels \
                 WHERE model = $1 AND request_id IN ({})",
                marks.join(", ")
            );
            // Only numbered placeholders are formatted in; every value is bound.
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(model.to_owned());
            for id in chunk {
                q = q.bind(id.clone());
            }
            for r in q.fetch_all(&self.pool).await.map_err(err)? {
                let num: Option<f64> = r.try_get(2).map_err(err)?;
                let text: Option<String> = r.try_get(3).map_err(err)?;
                out.push(Label {
                    request_id: r.try_get(0).map_err(err)?,
                    row: r.try_get(1).map_err(err)?,
                    value: match (num, text) {
                        (Some(x), _) => LabelValue::Number(x),
                        (None, Some(s)) => LabelValue::Class(s),
                        (None, None) => continue,
                    },
                    ts_ms: r.try_get(4).map_err(err)?,
                });
            }
        }
        Ok(out)
    }
}
