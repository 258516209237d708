//! Cron expressions (five fields, UTC): minute, hour, day of month, month, day of week. Each field
//! takes `*`, numbers, ranges `a-b`, steps `*/s` and `a-b/s`, and comma lists; months and days
//! may be written `jan`…`dec` and `sun`…`sat`; day 7 is Sunday too. When both day fields are
//! restricted a day matches either (as Vixie cron does).

#[derive(Clone, Debug, PartialEq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    any_day: bool,
    any_weekday: bool,
    source: String,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn field(s: &str, lo: u32, hi: u32, names: &[&str], what: &str) -> Result<(u64, bool), String> {
    let bad = |m: String| format!("cron {what} `{s}`: {m}");
    let value = |t: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| t.eq_ignore_ascii_case(n)) {
            return Ok(i as u32 + if names.len() == 12 { 1 } else { 0 });
        }
        t.parse::<u32>()
            .map_err(|_| bad(format!("`{t}` is not a number")))
    };
    let mut bits = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => (
                r,
                st.parse::<u32>()
                    .map_err(|_| bad(format!("bad step `{st}`")))?,
            ),
            None => (part, 1),
        };
        if step == 0 {
            return Err(bad("a step of 0".into()));
        }
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step > 1 { hi } else { v })
        };
        let top = if what == "day of week" { 7 } else { hi };
        if a < lo || b > top || a > b {
            return Err(bad(format!("{a}-{b} is outside {lo}-{hi}")));
        }
        let mut v = a;
        while v <= b {
            bits |= 1
                << (if what == "day of week" && v == 7 {
                    0
                } else {
                    v
                });
            v += step;
        }
    }
    Ok((bits, s == "*"))
}

pub use base::civil;

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        let [mi, h, dom, mo, dow] = parts[..] else {
            return Err(format!(
                "cron `{expr}` needs five fields: minute hour day month weekday"
            ));
        };
        let (minutes, _) = field(mi, 0, 59, &[], "minute")?;
        let (hours, _) = field(h, 0, 23, &[], "hour")?;
        let (days, any_day) = field(dom, 1, 31, &[], "day of month")?;
        let (months, _) = field(mo, 1, 12, &MONTHS, "month")?;
        let (weekdays, any_weekday) = field(dow, 0, 6, &WEEKDAYS, "day of week")?;
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            weekdays,
            any_day,
            any_weekday,
            source: expr.to_owned(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    fn day_matches(&self, days: i64) -> bool {
        let (_, m, d) = civil(days);
        let wd = (days + 4).rem_euclid(7) as u32; // 1970-01-01 was a Thursday
        if self.months & (1 << m) == 0 {
            return false;
        }
        let dom = self.days & (1 << d) != 0;
        let dow = self.weekdays & (1 << wd) != 0;
        match (self.any_day, self.any_weekday) {
            (true, true) => true,
            (true, false) => dow,
            (false, true) => dom,
            (false, false) => dom || dow,
        }
    }

    /// The first matching minute strictly after `after_ms` (epoch milliseconds, UTC), within
    /// five years; `None` for an expression that never matches (e.g. 31 February).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let mut minute = after_ms.div_euclid(60_000) + 1;
        let limit = minute + 5 * 366 * 24 * 60;
        while minute < limit {
            let days = minute.div_euclid(24 * 60);
            if !self.day_matches(days) {
                minute = (days + 1) * 24 * 60;
                continue;
            }
            let in_day = minute - days * 24 * 60;
            let (h, mi) = ((in_day / 60) as u32, (in_day % 60) as u32);
            if self.hours & (1 << h) == 0 {
                minute = days * 24 * 60 + (h as i64 + 1) * 60;
                continue;
            }
            if self.minutes & (1 << mi) == 0 {
                minute += 1;
                continue;
            }
            return Some(minute * 60_000);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27T10:47:30Z (a Friday).
    const T: i64 = 1_795_776_450_000;

    fn at(cron: &str, after: i64) -> i64 {
        Cron::parse(cron).unwrap().next_after(after).unwrap()
    }

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(T / 86_400_000), (2026, 11, 27));
        assert_eq!(civil(11_016), (2000, 2, 29));
    }

    #[test]
    fn next_times_follow_each_field() {
        assert_eq!(at("* * * * *", T), T - 30_000 + 60_000, "the next minute");
        assert_eq!(
            at("*/15 * * * *", T),
            T - 30_000 - 47 * 60_000 + 60 * 60_000,
            "11:00"
        );
        assert_eq!(
            at("0 0 * * *", T),
            (T / 86_400_000 + 1) * 86_400_000,
            "midnight"
        );
        // Monday 09:30: 2026-11-30.
        let monday = (T / 86_400_000 + 3) * 86_400_000 + 9 * 3_600_000 + 30 * 60_000;
        assert_eq!(at("30 9 * * mon", T), monday);
        assert_eq!(at("30 9 * * 1", T), monday);
        // 1 January 2027 (day of month and month).
        let (y, m, d) = civil(at("0 6 1 jan *", T) / 86_400_000);
        assert_eq!((y, m, d), (2027, 1, 1));
        // Both day fields restricted: either matches — the 1st (Tuesday Dec 1) or a Sunday (Nov 29).
        assert_eq!(civil(at("0 0 1 * sun", T) / 86_400_000), (2026, 11, 29));
        assert_eq!(
            civil(at("0 0 29 2 *", T) / 86_400_000),
            (2028, 2, 29),
            "the next leap day"
        );
        assert_eq!(at("0 12 * * 7", T), at("0 12 * * 0", T), "7 is Sunday");
        assert_eq!(
            at("5,10-12 * * * *", T) - (T - 30_000),
            60_000 * 18,
            "10:47 → 11:05"
        );
    }

    #[test]
    fn bad_expressions_are_refused_and_impossible_ones_never_fire() {
        for bad in [
            "* * * *",
            "60 * * * *",
            "* 24 * * *",
            "*/0 * * * *",
            "x * * * *",
            "5-1 * * * *",
            "* * 0 * *",
        ] {
            assert!(Cron::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(T), None);
    }
}
