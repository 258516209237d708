//! A dependency-free progress bar on stderr for long CLI work.

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
        // Redraw on a terminal; in logs only the final line is written.
        let due = std::io::stderr().is_terminal()
            && self.last_draw.is_none_or(|t| t.elapsed().as_millis() >= 80);
        if due {
            self.draw();
        }
    }

    fn draw(&mut self) {
        let width = 30;
        let filled = (self.done * width / self.total) as usize;
        let bar: String = "█".repeat(filled) + &"░".repeat(width as usize - filled);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r  {:<28} {bar} {:>5}/{:<5} {:>5.1}s",
            self.label,
            self.done,
            self.total,
            self.start.elapsed().as_secs_f64()
        );
        let _ = err.flush();
        self.last_draw = Some(Instant::now());
    }

    pub fn finish(mut self) {
        self.done = self.total;
        self.draw();
        let _ = writeln!(std::io::stderr());
    }
}
