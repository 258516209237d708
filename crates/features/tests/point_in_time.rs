//! Point-in-time joins: a property test against brute force on random sources and entity frames,
//! the real NYC flights × weather join (never a value from the future), and the errors users hit.

use data::frame::{ColumnData, Frame, parse_csv_frame};
use features::{Definitions, Request, historical_features};
use std::path::Path;

fn defs(ttl: i64, created: bool) -> Definitions {
    Definitions::from_yaml(&format!(
        r#"
entities:
  - {{name: driver, join_keys: [driver_id]}}
sources:
  - {{name: stats, path: stats.csv, timestamp: ts{}}}
feature_views:
  - name: driver_stats
    entities: [driver]
    source: stats
    ttl_seconds: {ttl}
    features:
      - {{name: rate, type: float}}
"#,
        if created {
            ", created_timestamp: created"
        } else {
            ""
        }
    ))
    .unwrap()
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

fn numbers(f: &Frame, c: &str) -> Vec<f64> {
    match &f.column(c).unwrap().data {
        ColumnData::Numeric(v) => v.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn as_of_join_equals_brute_force_on_random_data() {
    for case in 0..60u64 {
        let mut r = Lcg(case * 7919 + 1);
        let dir = tempfile::tempdir().unwrap();
        let ttl = [0, 5, 20][(case % 3) as usize];
        let created = case % 2 == 0;
        // Source rows: (driver, ts, created, rate); ties on ts are common.
        let rows: Vec<(u64, i64, i64, f64)> = (0..r.next(40) + 1)
            .map(|i| {
                (
                    r.next(4),
                    r.next(30) as i64,
                    r.next(5) as i64,
                    i as f64 + 0.5,
                )
            })
            .collect();
        let mut csv = String::from("driver_id,ts,created,rate\n");
        for (d, t, c, v) in &rows {
            csv += &format!("{d},{t},{c},{v}\n");
        }
        std::fs::write(dir.path().join("stats.csv"), csv).unwrap();
        let entities: Vec<(u64, i64)> = (0..30).map(|_| (r.next(5), r.next(40) as i64)).collect();
        let mut ecsv = String::from("driver_id,event_timestamp\n");
        for (d, t) in &entities {
            ecsv += &format!("{d},{t}\n");
        }
        let ef = parse_csv_frame(&ecsv).unwrap();
        let out = historical_features(
            &defs(ttl, created),
            dir.path(),
            &ef,
            &Request {
                features: &["driver_stats:rate".into()],
                timestamp: "event_timestamp",
                full_feature_names: false,
            },
        )
        .unwrap();
        let got = numbers(&out, "rate");
        for (i, (d, t)) in entities.iter().enumerate() {
            // Brute force: rows of this driver at or before t, within TTL; the latest event time,
            // then the latest created time, then the last written.
            let best = rows
                .iter()
                .enumerate()
                .filter(|(_, (rd, rt, _, _))| rd == d && rt <= t && (ttl == 0 || t - rt <= ttl))
                .max_by_key(|(j, (_, rt, rc, _))| (*rt, if created { *rc } else { 0 }, *j))
                .map(|(_, row)| row.3);
            match best {
                Some(v) => assert_eq!(got[i], v, "case {case} row {i}: driver {d} at {t}"),
                None => assert!(
                    got[i].is_nan(),
                    "case {case} row {i}: expected nothing, got {}",
                    got[i]
                ),
            }
        }
    }
}

#[test]
fn flights_get_the_weather_known_at_departure_never_later() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let defs = Definitions::from_yaml(
        r#"
entities:
  - {name: airport, join_keys: [origin]}
sources:
  - {name: weather, path: nyc_weather_2013.csv, timestamp: time_hour}
feature_views:
  - name: weather
    entities: [airport]
    source: weather
    ttl_seconds: 10800
    features:
      - {name: temp, type: float}
      - {name: wind_speed, type: float}
      - {name: visib, type: float}
"#,
    )
    .unwrap();
    defs.check_sources(&data).unwrap();
    let flights = data::frame::read_frame(&data.join("nyc_flights_2013_ewr_head20k.csv")).unwrap();
    assert_eq!(flights.rows(), 20_000);
    let out = historical_features(
        &defs,
        &data,
        &flights,
        &Request {
            features: &[
                "weather:temp".into(),
                "weather:wind_speed".into(),
                "weather:visib".into(),
            ],
            timestamp: "time_hour",
            full_feature_names: true,
        },
    )
    .unwrap();
    let temps = numbers(&out, "weather__temp");
    let found = temps.iter().filter(|t| !t.is_nan()).count();
    assert!(
        found as f64 > 0.99 * temps.len() as f64,
        "{found} of {}",
        temps.len()
    );
    // Spot check against the weather file by brute force: every 97th flight gets the latest
    // Newark observation at or before its scheduled hour, within 3 hours, never a later one.
    let weather = data::frame::read_frame(&data.join("nyc_weather_2013.csv")).unwrap();
    let (wts, _) = features::offline::timestamps(weather.column("time_hour").unwrap()).unwrap();
    let wtemp = numbers(&weather, "temp");
    let ewr: Vec<bool> = match &weather.column("origin").unwrap().data {
        ColumnData::Categorical { codes, levels } => {
            codes.iter().map(|&c| levels[c as usize] == "EWR").collect()
        }
        other => panic!("{other:?}"),
    };
    let (fts, _) = features::offline::timestamps(flights.column("time_hour").unwrap()).unwrap();
    for i in (0..flights.rows()).step_by(97) {
        let t = fts[i].unwrap();
        let expected = (0..weather.rows())
            .filter(|&j| ewr[j] && wts[j].is_some_and(|w| w <= t && t - w <= 10_800_000_000))
            .max_by_key(|&j| wts[j])
            .map(|j| wtemp[j]);
        match expected {
            Some(v) => assert_eq!(temps[i], v, "flight {i}"),
            None => assert!(temps[i].is_nan(), "flight {i}"),
        }
    }
}

#[test]
fn mistakes_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stats.csv"),
        "driver_id,ts,rate\n1,2013-01-01T00:00:00Z,0.5\n",
    )
    .unwrap();
    let d = defs(0, false);
    let req = |features: &[String], ts: &str, e: &str| {
        historical_features(
            &d,
            dir.path(),
            &parse_csv_frame(e).unwrap(),
            &Request {
                features,
                timestamp: ts,
                full_feature_names: false,
            },
        )
        .unwrap_err()
    };
    let ok = ["driver_stats:rate".to_owned()];
    assert!(
        req(
            &["driver_stats:nope".into()],
            "t",
            "driver_id,t\n1,2013-01-02\n"
        )
        .contains("no feature nope")
    );
    assert!(
        req(&["other:rate".into()], "t", "driver_id,t\n1,2013-01-02\n")
            .contains("unknown feature view other")
    );
    assert!(req(&ok, "when", "driver_id,t\n1,2013-01-02\n").contains("no timestamp column when"));
    assert!(
        req(&ok, "t", "driver,t\n1,2013-01-02T00:00:00Z\n")
            .contains("no join key column driver_id")
    );
    let naive = req(&ok, "t", "driver_id,t\n1,2013-01-02T00:00:00\n");
    assert!(
        naive.contains("naive") && naive.contains("zoned"),
        "{naive}"
    );
    assert!(req(&ok, "t", "driver_id,t\n1,yesterday\n").contains("\"yesterday\""));
    let mixed = req(&ok, "t", "driver_id,t\nD-1,2013-01-02T00:00:00Z\n");
    assert!(
        mixed.contains("join key driver_id holds numbers in source stats but text"),
        "{mixed}"
    );
    // Definitions that reference nothing are refused when loaded.
    for (yaml, needle) in [
        (
            "feature_views:\n  - {name: v, entities: [e], source: s, features: []}\n",
            "unknown entity e",
        ),
        ("entities:\n  - {name: e, join_keys: []}\n", "no join keys"),
        (
            "feature_services:\n  - {name: svc, features: [v:f]}\n",
            "unknown feature view v",
        ),
    ] {
        let e = Definitions::from_yaml(yaml).unwrap_err();
        assert!(e.contains(needle), "{e}");
    }
    let missing_ts = Definitions::from_yaml(
        "entities:\n  - {name: driver, join_keys: [driver_id]}\nsources:\n  - {name: stats, path: stats.csv, timestamp: when}\nfeature_views:\n  - {name: v, entities: [driver], source: stats, features: [{name: rate, type: float}]}\n",
    )
    .unwrap()
    .check_sources(dir.path())
    .unwrap_err();
    assert!(
        missing_ts.contains("no timestamp column when"),
        "{missing_ts}"
    );
    let wrong_type = Definitions::from_yaml(
        "entities:\n  - {name: driver, join_keys: [driver_id]}\nsources:\n  - {name: stats, path: stats.csv, timestamp: ts}\nfeature_views:\n  - {name: v, entities: [driver], source: stats, features: [{name: rate, type: string}]}\n",
    )
    .unwrap()
    .check_sources(dir.path())
    .unwrap_err();
    assert!(
        wrong_type.contains(
            "feature v:rate is declared string but source stats (stats.csv) holds numbers"
        ),
        "{wrong_type}"
    );
}

#[test]
fn every_entity_as_of_a_time_matches_the_per_row_join() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stats.csv"),
        "driver_id,ts,rate\n1,10,0.1\n1,20,0.2\n2,15,1.5\n3,30,3.0\n2,40,4.0\n",
    )
    .unwrap();
    let all = features::offline::all_entities_as_of(
        &defs(0, false),
        dir.path(),
        &["driver_stats:rate".into()],
        25_000_000,
        false,
    )
    .unwrap();
    // Drivers 1 and 2 have a value at or before t = 25 s; driver 3 only later.
    assert_eq!(all.rows(), 2);
    assert_eq!(numbers(&all, "rate"), vec![0.2, 1.5]);
    let with_ttl = features::offline::all_entities_as_of(
        &defs(8, false),
        dir.path(),
        &["driver_stats:rate".into()],
        25_000_000,
        false,
    )
    .unwrap();
    assert_eq!(
        numbers(&with_ttl, "rate"),
        vec![0.2],
        "driver 2's value is 10 s old, TTL 8 s"
    );
}

#[test]
fn on_demand_features_compute_from_request_fields_and_joined_features() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("stats.csv"),
        "driver_id,ts,rate\n1,10,0.5\n1,20,0.25\n2,15,2.0\n",
    )
    .unwrap();
    let d = Definitions::from_yaml(
        r#"
entities:
  - {name: driver, join_keys: [driver_id]}
sources:
  - {name: stats, path: stats.csv, timestamp: ts}
feature_views:
  - name: driver_stats
    entities: [driver]
    source: stats
    features: [{name: rate, type: float}]
on_demand_views:
  - name: trip
    sources: [driver_stats]
    request: [trip_km]
    features:
      - {name: cost, expr: "trip_km * rate + 1"}
      - {name: log_km, expr: "ln(trip_km)"}
"#,
    )
    .unwrap();
    let e = parse_csv_frame("driver_id,t,trip_km\n1,12,10\n1,25,4\n2,16,0\n3,30,5\n").unwrap();
    let out = historical_features(
        &d,
        dir.path(),
        &e,
        &Request {
            features: &["trip:cost".into(), "trip:log_km".into()],
            timestamp: "t",
            full_feature_names: false,
        },
    )
    .unwrap();
    let cost = numbers(&out, "cost");
    assert_eq!(
        cost[..3],
        [10.0 * 0.5 + 1.0, 4.0 * 0.25 + 1.0, 0.0 * 2.0 + 1.0]
    );
    assert!(cost[3].is_nan(), "driver 3 has no rate: no cost");
    assert!(numbers(&out, "log_km")[2].is_nan(), "ln(0) is not a value");
    assert!(
        out.column("rate").is_none(),
        "inputs read on demand are not added as columns"
    );
    for (yaml_feature, needle) in [
        (
            "{name: bad, expr: \"speed * 2\"}",
            "speed is neither a request field",
        ),
        (
            "{name: bad, expr: \"log(trip_km)\"}",
            "unknown function log",
        ),
    ] {
        let y = format!(
            "entities:\n  - {{name: driver, join_keys: [driver_id]}}\nsources:\n  - {{name: stats, path: stats.csv, timestamp: ts}}\nfeature_views:\n  - {{name: driver_stats, entities: [driver], source: stats, features: [{{name: rate, type: float}}]}}\non_demand_views:\n  - {{name: trip, sources: [driver_stats], request: [trip_km], features: [{yaml_feature}]}}\n"
        );
        let err = Definitions::from_yaml(&y).unwrap_err();
        assert!(err.contains(needle), "{err}");
    }
    let missing = historical_features(
        &d,
        dir.path(),
        &parse_csv_frame("driver_id,t\n1,12\n").unwrap(),
        &Request {
            features: &["trip:cost".into()],
            timestamp: "t",
            full_feature_names: false,
        },
    )
    .unwrap_err();
    assert!(missing.contains("needs request field trip_km"), "{missing}");
}

#[test]
fn chunked_materialisation_equals_the_in_memory_snapshot() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    let defs = Definitions::from_yaml(
        "entities:\n  - {name: airport, join_keys: [origin]}\nsources:\n  - {name: w, path: nyc_weather_2013.csv, timestamp: time_hour}\nfeature_views:\n  - {name: weather, entities: [airport], source: w, ttl_seconds: 7200, features: [{name: temp, type: float}, {name: wind_gust, type: float}]}\n",
    )
    .unwrap();
    let view = &defs.feature_views[0];
    for end in [
        "2013-03-10T07:00:00Z",
        "2013-12-31T23:00:00Z",
        "2012-01-01T00:00:00Z",
    ] {
        let at = features::time::parse(end).unwrap().micros;
        let whole = features::online::snapshot(&defs, view, &data, at).unwrap();
        let chunked = features::online::snapshot_chunked(&defs, view, &data, at, 997).unwrap();
        assert_eq!(whole, chunked, "as of {end}");
    }
    // Random sources with ties on event time and created time, chunk sizes 1 to 7.
    for case in 0..20u64 {
        let mut r = Lcg(case + 101);
        let dir = tempfile::tempdir().unwrap();
        let mut csv = String::from("driver_id,ts,created,rate\n");
        for i in 0..(r.next(50) + 1) {
            csv += &format!("{},{},{},{}\n", r.next(4), r.next(20), r.next(3), i);
        }
        std::fs::write(dir.path().join("stats.csv"), csv).unwrap();
        let d = defs_with(case);
        let at = r.next(25) as i64 * 1_000_000;
        let whole = features::online::snapshot(&d, &d.feature_views[0], dir.path(), at).unwrap();
        let chunked = features::online::snapshot_chunked(
            &d,
            &d.feature_views[0],
            dir.path(),
            at,
            (case % 7 + 1) as usize,
        )
        .unwrap();
        assert_eq!(whole, chunked, "case {case}");
    }
}

fn defs_with(case: u64) -> Definitions {
    defs([0, 5][(case % 2) as usize], !case.is_multiple_of(3))
}

#[test]
fn incremental_materialisation_equals_a_full_one() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data");
    for ttl in [0, 7200] {
        let defs = Definitions::from_yaml(&format!(
            "entities:\n  - {{name: airport, join_keys: [origin]}}\nsources:\n  - {{name: w, path: nyc_weather_2013.csv, timestamp: time_hour}}\nfeature_views:\n  - {{name: weather, entities: [airport], source: w, ttl_seconds: {ttl}, features: [{{name: temp, type: float}}]}}\n"
        ))
        .unwrap();
        let view = &defs.feature_views[0];
        let t = |s: &str| features::time::parse(s).unwrap().micros;
        let mut snap =
            features::online::snapshot_chunked(&defs, view, &data, t("2013-02-01T00:00:00Z"), 5000)
                .unwrap();
        let mut start = t("2013-02-01T00:00:00Z");
        for end in [
            "2013-02-01T05:30:00Z",
            "2013-06-15T12:00:00Z",
            "2013-06-15T12:00:00Z",
            "2013-12-31T23:59:59Z",
        ] {
            let end = t(end);
            snap =
                features::online::snapshot_incremental(&defs, view, &data, snap, start, end, 5000)
                    .unwrap();
            let full = features::online::snapshot_chunked(&defs, view, &data, end, 5000).unwrap();
            assert_eq!(
                snap,
                full,
                "ttl {ttl}, up to {}",
                features::time::format_micros(end)
            );
            start = end;
        }
    }
}
