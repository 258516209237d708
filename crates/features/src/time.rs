//! Timestamps as microseconds since the Unix epoch, parsed from RFC 3339 / ISO 8601 text
//! (`2013-01-01T06:00:00Z`, `2013-01-01 06:00:00+01:00`, `2013-01-01T06:00:00.250`, `2013-01-01`)
//! or taken from numbers (epoch seconds). Text without an offset is "naive"; mixing naive and
//! zoned timestamps in one column is an error, as it is ambiguous.

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date and time of `micros` as `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`.
pub fn format_micros(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    );
    if frac == 0 {
        base + "Z"
    } else {
        format!("{base}.{frac:06}Z")
    }
}

/// A parsed timestamp: microseconds since the epoch (UTC when zoned) and whether it had an offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub micros: i64,
    pub zoned: bool,
}

fn num(s: &str, what: &str) -> Result<i64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("bad {what} {s:?}"));
    }
    s.parse().map_err(|_| format!("bad {what} {s:?}"))
}

/// Parses one timestamp (see the module docs).
pub fn parse(s: &str) -> Result<Stamp, String> {
    let s = s.trim();
    let err = |m: String| format!("timestamp {s:?}: {m}");
    if s.len() < 10 {
        return Err(err("expected YYYY-MM-DD[THH:MM:SS[.fff]][Z|±HH:MM]".into()));
    }
    let (date, rest) = s.split_at(10);
    let parts: Vec<&str> = date.split('-').collect();
    if parts.len() != 3 {
        return Err(err("expected YYYY-MM-DD".into()));
    }
    let y = num(parts[0], "year").map_err(err)?;
    let m = num(parts[1], "month").map_err(err)? as u32;
    let d = num(parts[2], "day").map_err(err)? as u32;
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let dim = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&m) || d < 1 || d > dim[(m - 1) as usize] {
        return Err(err("no such date".into()));
    }
    let mut micros = days_from_civil(y, m, d) * 86_400_000_000;
    if rest.is_empty() {
        return Ok(Stamp {
            micros,
            zoned: false,
        });
    }
    let rest = rest
        .strip_prefix('T')
        .or_else(|| rest.strip_prefix(' '))
        .ok_or_else(|| err("expected T or a space after the date".into()))?;
    // Split off the offset.
    let (clock, offset) = if let Some(c) = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z'))
    {
        (c, Some(0i64))
    } else if let Some(i) = rest.rfind(['+', '-']).filter(|&i| i >= 5) {
        let (c, o) = rest.split_at(i);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let o = &o[1..];
        let (oh, om) = o
            .split_once(':')
            .unwrap_or((&o[..o.len().min(2)], &o[o.len().min(2)..]));
        let mins = num(oh, "offset hours").map_err(err)? * 60
            + if om.is_empty() {
                0
            } else {
                num(om, "offset minutes").map_err(err)?
            };
        (c, Some(sign * mins))
    } else {
        (rest, None)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let f: Vec<&str> = hms.split(':').collect();
    if f.len() < 2 || f.len() > 3 {
        return Err(err("expected HH:MM[:SS]".into()));
    }
    let h = num(f[0], "hour").map_err(err)?;
    let mi = num(f[1], "minute").map_err(err)?;
    let sec = if f.len() == 3 {
        num(f[2], "second").map_err(err)?
    } else {
        0
    };
    if h > 23 || mi > 59 || sec > 60 {
        return Err(err("no such time".into()));
    }
    let frac_us = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(6).collect();
        num(&digits, "fraction").map_err(err)? * 10i64.pow(6 - digits.len() as u32)
    };
    micros += ((h * 60 + mi) * 60 + sec) * 1_000_000 + frac_us;
    if let Some(o) = offset {
        micros -= o * 60_000_000;
    }
    Ok(Stamp {
        micros,
        zoned: offset.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_usual_forms() {
        let z = parse("2013-01-01T06:00:00Z").unwrap();
        assert_eq!(
            z,
            Stamp {
                micros: 1_357_020_000_000_000,
                zoned: true
            }
        );
        assert_eq!(parse("2013-01-01 07:00:00+01:00").unwrap().micros, z.micros);
        assert_eq!(parse("2013-01-01T01:00:00-0500").unwrap().micros, z.micros);
        let naive = parse("2013-01-01T06:00:00.25").unwrap();
        assert_eq!((naive.micros - z.micros, naive.zoned), (250_000, false));
        assert_eq!(parse("1970-01-02").unwrap().micros, 86_400_000_000);
        assert_eq!(
            parse("2000-02-29T00:00").unwrap().micros,
            951_782_400_000_000
        );
        for bad in [
            "2013-02-29",
            "2013-13-01",
            "yesterday",
            "2013-01-01T25:00:00",
            "2013-01-01X1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format_micros(z.micros), "2013-01-01T06:00:00Z");
        assert_eq!(format_micros(naive.micros), "2013-01-01T06:00:00.250000Z");
        assert_eq!(format_micros(-1_000_000), "1969-12-31T23:59:59Z");
    }
}
