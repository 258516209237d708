//! The behaviour every [`VectorStore`] must have, as one function both implementations' tests
//! call (the embedded store in this crate, pgvector in `store`). It panics on the first
//! difference, naming it.

use crate::{
    CollectionConfig, Error, Filter, HnswParams, Metric, Point, PointId, SearchRequest,
    VectorCollection, VectorStore,
};
use serde_json::json;

/// `expect` for a test suite that lives outside `#[cfg(test)]` (both backends' tests call it).
trait Must<T> {
    fn must(self, what: &str) -> T;
}

impl<T, E: std::fmt::Debug> Must<T> for std::result::Result<T, E> {
    fn must(self, what: &str) -> T {
        match self {
            Ok(v) => v,
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

impl<T> Must<T> for Option<T> {
    fn must(self, what: &str) -> T {
        match self {
            Some(v) => v,
            None => panic!("{what}: nothing"),
        }
    }
}

/// A hash of `x` in [0, 1): distinct, reproducible values.
fn noise(x: u64) -> f32 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32
}

/// Points around four directions; the payload names the direction (`group`).
pub fn points(range: std::ops::Range<u64>, dim: usize) -> Vec<Point> {
    range
        .map(|i| {
            let group = i % 4;
            let vector = (0..dim)
                .map(|d| {
                    let base = if d as u64 % 4 == group { 1.0 } else { 0.0 };
                    base + (noise(i * 1_000 + d as u64) - 0.5) * 0.3
                })
                .collect();
            Point {
                id: PointId::Num(i),
                vector,
                payload: json!({"group": group, "even": i % 2 == 0, "tag": format!("t{}", i % 10),
                                "meta": {"rank": i}, "tags": [format!("g{group}"), "all"]})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            }
        })
        .collect()
}

fn filter(v: serde_json::Value) -> Filter {
    Filter::parse(&v).must("test filter parses")
}

fn ids(found: &[crate::ScoredPoint]) -> Vec<PointId> {
    found.iter().map(|p| p.id.clone()).collect()
}

fn search(
    c: &dyn VectorCollection,
    v: Vec<f32>,
    k: usize,
    f: Option<Filter>,
    exact: bool,
) -> Vec<crate::ScoredPoint> {
    let mut req = SearchRequest::new(v, k);
    req.filter = f;
    req.exact = exact;
    c.search(&req).must("search")
}

/// Runs every check on collections named `<prefix>…` (dropped at the end).
pub fn run(store: &dyn VectorStore, prefix: &str) {
    let name = format!("{prefix}main");
    let _ = store.delete(&name);
    let config = CollectionConfig {
        dim: 8,
        metric: Metric::Cosine,
        hnsw: HnswParams {
            m: 8,
            ef_construction: 64,
            seed: 1,
        },
        quantize: false,
        embedder: Some("all-MiniLM-L6-v2".into()),
    };
    let c = store.create(&name, config.clone()).must("create");
    assert!(
        matches!(store.create(&name, config.clone()), Err(Error::Conflict(_))),
        "create twice"
    );
    assert!(store.list().must("list").contains(&name));
    assert_eq!(
        store.get(&name).must("get").config(),
        &config,
        "config round-trips"
    );
    assert!(matches!(
        store.get(&format!("{prefix}missing")),
        Err(Error::NotFound(_))
    ));

    assert!(c.upsert(points(0..400, 8)).must("upsert") > 0);
    assert_eq!(c.count(None).must("count"), 400);
    assert_eq!(c.info().must("info").points_count, 400);
    let g2 = filter(json!({"must": [{"key": "group", "match": {"value": 2}}]}));
    assert_eq!(c.count(Some(&g2)).must("count"), 100, "match value");

    // Nearest to a stored vector: itself, cosine 1.
    let p17 = points(17..18, 8).remove(0);
    let found = search(c.as_ref(), p17.vector.clone(), 3, None, false);
    assert_eq!(found[0].id, PointId::Num(17));
    assert!(
        (found[0].score - 1.0).abs() < 1e-4,
        "cosine score {}",
        found[0].score
    );
    assert_eq!(found[0].payload.as_ref().must("payload")["tag"], "t7");
    // Scores descend.
    assert!(found.windows(2).all(|w| w[0].score >= w[1].score));

    // Filters: every grammar element, checked against counting by hand.
    let all = points(0..400, 8);
    let cases = [
        (
            json!({"must": [{"key": "even", "match": {"value": false}}, {"key": "tag", "match": {"any": ["t3", "t5"]}}]}),
            all.iter()
                .filter(|p| {
                    let i = match p.id {
                        PointId::Num(i) => i,
                        _ => 0,
                    };
                    i % 2 == 1 && (i % 10 == 3 || i % 10 == 5)
                })
                .count(),
        ),
        (
            json!({"must": [{"key": "meta.rank", "range": {"gte": 100, "lt": 150}}]}),
            50,
        ),
        (
            json!({"must_not": [{"key": "group", "match": {"value": 0}}]}),
            300,
        ),
        (
            json!({"should": [{"key": "group", "match": {"value": 1}}, {"key": "group", "match": {"value": 3}}]}),
            200,
        ),
        (
            json!({"must": [{"key": "tags", "match": {"value": "g1"}}]}),
            100,
        ),
        (
            json!({"must": [{"key": "tag", "match": {"except": ["t1", "t2"]}}]}),
            320,
        ),
        (json!({"must": [{"has_id": [1, 2, 3, 999]}]}), 3),
        (json!({"must": [{"is_empty": {"key": "nothing"}}]}), 400),
        (
            json!({"must": [{"must": [{"key": "group", "match": {"value": 2}}], "must_not": [{"key": "even", "match": {"value": true}}]}]}),
            0,
        ),
    ];
    for (f, want) in cases {
        let parsed = filter(f.clone());
        assert_eq!(c.count(Some(&parsed)).must("count"), want, "count with {f}");
        let got = search(
            c.as_ref(),
            p17.vector.clone(),
            10,
            Some(parsed.clone()),
            false,
        );
        let exact = search(
            c.as_ref(),
            p17.vector.clone(),
            10,
            Some(parsed.clone()),
            true,
        );
        assert_eq!(got.len(), want.min(10), "search with {f}");
        assert_eq!(ids(&got), ids(&exact), "filtered search = exact with {f}");
        for p in &got {
            let payload = p.payload.as_ref().must("payload");
            assert!(parsed.matches(&p.id, payload), "{} does not pass {f}", p.id);
        }
    }

    // Replace: same id, new vector and payload.
    let mut moved = points(17..18, 8);
    moved[0].vector = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    moved[0].payload = json!({"group": 9}).as_object().cloned().unwrap_or_default();
    c.upsert(moved).must("replace");
    assert_eq!(c.count(None).must("count"), 400);
    let got = c
        .get(&[PointId::Num(17), PointId::Num(5000)], true)
        .must("get");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].payload["group"], 9);
    assert!((got[0].vector[7] - 1.0).abs() < 1e-6 && got[0].vector[0].abs() < 1e-6);

    // String ids live beside numbers.
    let mut s = points(0..1, 8);
    s[0].id = PointId::Str("doc-a".into());
    c.upsert(s).must("string id");
    assert_eq!(
        c.get(&[PointId::Str("doc-a".into())], false)
            .must("get")
            .len(),
        1
    );

    // Delete by id and by filter.
    c.delete(vec![
        PointId::Num(17),
        PointId::Num(99_999),
        PointId::Str("doc-a".into()),
    ])
    .must("delete");
    assert_eq!(c.count(None).must("count"), 399);
    let removed = c
        .delete_matching(&filter(
            json!({"must": [{"key": "group", "match": {"value": 0}}]}),
        ))
        .must("delete matching");
    assert_eq!(removed, 100);
    assert_eq!(c.count(None).must("count"), 299);

    // Paging in id order.
    let (page, next) = c.scroll(None, None, 5).must("scroll");
    let nums: Vec<PointId> = page.iter().map(|p| p.id.clone()).collect();
    assert_eq!(nums, [1, 2, 3, 5, 6].map(PointId::Num).to_vec());
    let (page, _) = c.scroll(None, next.as_ref(), 3).must("scroll");
    assert_eq!(
        page.iter().map(|p| p.id.clone()).collect::<Vec<_>>(),
        [7, 9, 10].map(PointId::Num).to_vec()
    );
    let (page, next) = c.scroll(Some(&g2), None, 1000).must("scroll filtered");
    assert_eq!((page.len(), next), (100, None));

    // Refusals change nothing.
    let mut bad = points(1000..1010, 8);
    bad[3].vector.pop();
    assert!(matches!(c.upsert(bad), Err(Error::BadRequest(m)) if m.contains("expects 8")));
    assert_eq!(c.count(None).must("count"), 299);
    assert!(matches!(
        c.search(&SearchRequest::new(vec![1.0; 3], 5)),
        Err(Error::BadRequest(_))
    ));

    // Sequence numbers grow; metadata round-trips.
    let before = c.info().must("info").sequence;
    c.upsert(points(2000..2001, 8)).must("upsert");
    assert!(c.info().must("info").sequence > before);
    assert_eq!(c.read_meta("manifest").must("meta"), None);
    c.write_meta("manifest", b"{\"a\":1}").must("write meta");
    c.write_meta("manifest", b"{\"a\":2}")
        .must("overwrite meta");
    assert_eq!(
        c.read_meta("manifest").must("meta").as_deref(),
        Some(&b"{\"a\":2}"[..])
    );

    // Euclidean and dot collections score in their own units.
    let l2 = format!("{prefix}l2");
    let _ = store.delete(&l2);
    let e = store
        .create(
            &l2,
            CollectionConfig {
                dim: 3,
                metric: Metric::Euclid,
                hnsw: HnswParams::default(),
                quantize: false,
                embedder: None,
            },
        )
        .must("create l2");
    e.upsert(
        (0..20u64)
            .map(|i| Point {
                id: PointId::Num(i),
                vector: vec![i as f32, 0.0, 1.0],
                payload: Default::default(),
            })
            .collect(),
    )
    .must("upsert l2");
    let found = search(e.as_ref(), vec![7.2, 0.0, 1.0], 2, None, false);
    assert_eq!(found[0].id, PointId::Num(7));
    assert!(
        (found[0].score - 0.2).abs() < 1e-4,
        "L2 distance {}",
        found[0].score
    );
    assert_eq!(found[1].id, PointId::Num(8));

    store.delete(&l2).must("drop l2");
    store.delete(&name).must("drop");
    assert!(matches!(store.get(&name), Err(Error::NotFound(_))));
    assert!(matches!(store.delete(&name), Err(Error::NotFound(_))));
}
