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

    /// For SQLite: the text with anonymous `?` placeholders instead of `$1…$n`. SQLite resolves
    /// a numbered or named parameter's name by scanning every name in the statement, so binding
    /// n of them costs n² (a 50-row insert of 17 columns spent a fifth of its time there);
    /// anonymous ones are bound by position. Valid because this builder numbers placeholders
    /// in the order it writes them, each used once.
    pub fn positional(&mut self) -> &mut Sql {
        let mut out = String::with_capacity(self.text.len());
        let mut chars = self.text.chars().peekable();
        let mut in_literal = false;
        while let Some(c) = chars.next() {
            if c == '\'' {
                in_literal = !in_literal;
            }
            if c == '$' && !in_literal && chars.peek().is_some_and(char::is_ascii_digit) {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push('?');
            } else {
                out.push(c);
            }
        }
        self.text = out;
        self
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_placeholders_keep_literals() {
        let mut q = Sql::new("SELECT '$1' FROM t WHERE a = ");
        q.bind(Arg::I64(1)).push(" AND b IN ");
        q.bind_row(vec![Arg::I64(2), Arg::I64(3)]);
        q.positional();
        assert_eq!(q.text, "SELECT '$1' FROM t WHERE a = ? AND b IN (?, ?)");
    }
}
