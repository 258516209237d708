//! A dependency-free progress bar on stderr for long CLI work. On a terminal it redraws in place;
//! in a log (stderr not a terminal) it writes a plain line every ten seconds, so long background
//! runs still show where they are.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    last_draw: Option<Instant>,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Progress {
        let mut p = Progress {
            label: label.to_owned(),
            total: total.max(1),
            done: 0,
            start: Instant::now(),
            last_draw: None,
        };
        p.draw();
        p
    }

    pub fn inc(&mut self, n: u64) {
        self.done = (self.done + n).min(self.total);
        let every_ms = if std::io::stderr().is_terminal() {
            80
        } else {
            10_000
        };
        if self
            .last_draw
            .is_none_or(|t| t.elapsed().as_millis() >= every_ms)
        {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let width = 30;
        let filled = (self.done * width / self.total) as usize;
        let bar: String = "█".repeat(filled) + &"░".repeat(width as usize - filled);
        let terminal = std::io::stderr().is_terminal();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "{}  {:<28} {bar} {:>5}/{:<5} {:>5.1}s{}",
            if terminal { "\r" } else { "" },
            self.label,
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64(),
            if terminal { "" } else { "\n" }
        );
        let _ = err.flush();
        self.last_draw = Some(Instant::now());
    }

    pub fn finish(mut self) {
        self.done = self.total;
        self.draw();
        if std::io::stderr().is_terminal() {
            let _ = writeln!(std::io::stderr());
        }
    }
}
