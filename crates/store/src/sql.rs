//! A small builder for SQL with bound arguments: text from our code, values always as `$n` binds.

use sqlx::Arguments;
use sqlx::any::AnyArguments;

#[derive(Debug, Clone)]
pub(crate) enum Arg {
    I64(i64),
    F64(f64),
    Text(String),
}

#[derive(Default)]
pub(crate) struct Sql {
    pub text: String,
    args: Vec<Arg>,
}

impl Sql {
    pub fn new(text: &str) -> Sql {
        Sql {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Appends trusted SQL text (never user input).
    pub fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `arg`.
    pub fn bind(&mut self, arg: Arg) -> &mut Sql {
        self.args.push(arg);
        self.text.push('$');
        self.text.push_str(&self.args.len().to_string());
        self
    }

    pub fn bind_text(&mut self, s: &str) -> &mut Sql {
        self.bind(Arg::Text(s.to_owned()))
    }

    /// `(…, …)` row of placeholders.
    pub fn bind_row(&mut self, row: Vec<Arg>) -> &mut Sql {
        self.text.push('(');
        for (i, a) in row.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(a);
        }
        self.text.push(')');
        self
    }

    pub fn bind_list(&mut self, items: &[String]) -> &mut Sql {
        self.bind_row(items.iter().map(|s| Arg::Text(s.clone())).collect())
    }

    pub fn build(&self) -> sqlx::query::Query<'_, sqlx::Any, AnyArguments> {
        let mut args = AnyArguments::default();
        for a in &self.args {
            // Adding to AnyArguments only fails on an encode error, impossible for these types.
            let _ = match a {
                Arg::I64(v) => args.add(*v),
                Arg::F64(v) => args.add(*v),
                Arg::Text(v) => args.add(v.clone()),
            };
        }
        sqlx::query_with(sqlx::AssertSqlSafe(self.text.as_str()), args)
    }
}
