//! Expressions of on-demand features: numbers, names (request fields or source features),
//! `+ - * /`, unary minus, parentheses and the functions `abs`, `sqrt`, `ln`, `exp`, `min`, `max`.
//! A missing input (NaN) makes the result missing.

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    Var(String),
    Neg(Box<Expr>),
    Bin(char, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

const FUNCTIONS: [(&str, usize); 6] = [
    ("abs", 1),
    ("sqrt", 1),
    ("ln", 1),
    ("exp", 1),
    ("min", 2),
    ("max", 2),
];

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn err<T>(&self, m: &str) -> Result<T, String> {
        Err(format!("{m} at position {}", self.i + 1))
    }

    fn expr(&mut self) -> Result<Expr, String> {
        let mut left = self.term()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.i += 1;
            left = Expr::Bin(op as char, Box::new(left), Box::new(self.term()?));
        }
        Ok(left)
    }

    fn term(&mut self) -> Result<Expr, String> {
        let mut left = self.factor()?;
        while let Some(op @ (b'*' | b'/')) = self.peek() {
            self.i += 1;
            left = Expr::Bin(op as char, Box::new(left), Box::new(self.factor()?));
        }
        Ok(left)
    }

    fn factor(&mut self) -> Result<Expr, String> {
        match self.peek() {
            Some(b'-') => {
                self.i += 1;
                Ok(Expr::Neg(Box::new(self.factor()?)))
            }
            Some(b'(') => {
                self.i += 1;
                let e = self.expr()?;
                if self.peek() != Some(b')') {
                    return self.err("expected )");
                }
                self.i += 1;
                Ok(e)
            }
            Some(c) if c.is_ascii_digit() || c == b'.' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_digit()
                        || self.s[self.i] == b'.'
                        || self.s[self.i] == b'e'
                        || ((self.s[self.i] == b'-' || self.s[self.i] == b'+')
                            && self.s[self.i - 1] == b'e'))
                {
                    self.i += 1;
                }
                let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
                text.parse()
                    .map(Expr::Num)
                    .or_else(|_| self.err(&format!("bad number {text:?}")))
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self.i < self.s.len()
                    && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
                {
                    self.i += 1;
                }
                let name = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                if self.peek() != Some(b'(') {
                    return Ok(Expr::Var(name));
                }
                self.i += 1;
                let mut args = Vec::new();
                if self.peek() != Some(b')') {
                    loop {
                        args.push(self.expr()?);
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b')') => break,
                            _ => return self.err("expected , or )"),
                        }
                    }
                }
                self.i += 1;
                match FUNCTIONS.iter().find(|(f, _)| *f == name) {
                    Some((_, n)) if *n == args.len() => Ok(Expr::Call(name, args)),
                    Some((_, n)) => self.err(&format!("{name} takes {n} argument(s)")),
                    None => self.err(&format!(
                        "unknown function {name} (known: abs, sqrt, ln, exp, min, max)"
                    )),
                }
            }
            Some(c) => self.err(&format!("unexpected {:?}", c as char)),
            None => self.err("unexpected end"),
        }
    }
}

impl Expr {
    pub fn parse(text: &str) -> Result<Expr, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let e = p.expr()?;
        if p.peek().is_some() {
            return p.err("unexpected text");
        }
        Ok(e)
    }

    /// The names the expression reads.
    pub fn vars(&self) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::Num(_) => {}
                Expr::Var(v) => {
                    if !out.contains(v) {
                        out.push(v.clone());
                    }
                }
                Expr::Neg(a) => walk(a, out),
                Expr::Bin(_, a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Call(_, args) => args.iter().for_each(|a| walk(a, out)),
            }
        }
        walk(self, &mut out);
        out
    }

    pub fn eval(&self, var: &dyn Fn(&str) -> f64) -> f64 {
        match self {
            Expr::Num(x) => *x,
            Expr::Var(v) => var(v),
            Expr::Neg(a) => -a.eval(var),
            Expr::Bin(op, a, b) => {
                let (x, y) = (a.eval(var), b.eval(var));
                match op {
                    '+' => x + y,
                    '-' => x - y,
                    '*' => x * y,
                    _ => x / y,
                }
            }
            Expr::Call(f, args) => {
                let a: Vec<f64> = args.iter().map(|e| e.eval(var)).collect();
                match f.as_str() {
                    "abs" => a[0].abs(),
                    "sqrt" => a[0].sqrt(),
                    "ln" => a[0].ln(),
                    "exp" => a[0].exp(),
                    "min" => a[0].min(a[1]),
                    _ => a[0].max(a[1]),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_evaluates_with_precedence() {
        let e = Expr::parse("trip_km / max(avg_daily_trips, 1) + -2 * (3 - 1.5e0)").unwrap();
        assert_eq!(
            e.vars(),
            vec!["trip_km".to_owned(), "avg_daily_trips".to_owned()]
        );
        let v = |n: &str| if n == "trip_km" { 10.0 } else { 4.0 };
        assert_eq!(e.eval(&v), 10.0 / 4.0 - 3.0);
        assert!(Expr::parse("sqrt(x)").unwrap().eval(&|_| f64::NAN).is_nan());
        for (bad, needle) in [
            ("a +", "unexpected end"),
            ("log(a)", "unknown function log"),
            ("min(a)", "min takes 2"),
            ("(a", "expected )"),
            ("a b", "unexpected text"),
        ] {
            let e = Expr::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
