//! Collections end to end on a real directory: writes, searches with filters, persistence
//! through the log and snapshots, compaction, restore, and refused input.

use serde_json::{Value, json};
use vector::conformance::points;
use vector::{
    Collection, CollectionConfig, Collections, Error, Filter, HnswParams, Metric, Point, PointId,
    SearchRequest,
};

fn config(dim: usize, metric: Metric) -> CollectionConfig {
    CollectionConfig {
        dim,
        metric,
        hnsw: HnswParams {
            m: 8,
            ef_construction: 64,
            seed: 1,
        },
        quantize: false,
        embedder: None,
    }
}

fn ids(found: &[vector::ScoredPoint]) -> Vec<PointId> {
    found.iter().map(|p| p.id.clone()).collect()
}

fn filter(v: Value) -> Filter {
    Filter::parse(&v).unwrap()
}

fn search(c: &Collection, v: Vec<f32>, k: usize, f: Option<Filter>) -> Vec<vector::ScoredPoint> {
    let mut req = SearchRequest::new(v, k);
    req.filter = f;
    c.search(&req).unwrap()
}

#[test]
fn upsert_search_filter_count_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = Collections::open(dir.path()).unwrap();
    let c = store.create("docs", config(8, Metric::Cosine)).unwrap();
    c.upsert(points(0..400, 8)).unwrap();
    assert_eq!(c.count(None), 400);
    assert_eq!(
        c.count(Some(&filter(
            json!({"must": [{"key": "group", "match": {"value": 2}}]})
        ))),
        100
    );

    // The nearest point to a stored vector is itself, with cosine similarity 1.
    let p17 = &points(17..18, 8)[0];
    let found = search(&c, p17.vector.clone(), 3, None);
    assert_eq!(found[0].id, PointId::Num(17));
    assert!((found[0].score - 1.0).abs() < 1e-5);
    assert_eq!(found[0].payload.as_ref().unwrap()["tag"], "t7");

    // Filtered: every hit passes, and they equal the exact filtered answer.
    let f = filter(json!({"must": [{"key": "even", "match": {"value": false}},
                                   {"key": "tag", "match": {"any": ["t3", "t5"]}}]}));
    let got = search(&c, p17.vector.clone(), 10, Some(f.clone()));
    assert_eq!(got.len(), 10);
    let mut exact = SearchRequest::new(p17.vector.clone(), 10);
    exact.filter = Some(f);
    exact.exact = true;
    assert_eq!(ids(&got), ids(&c.search(&exact).unwrap()));
    for p in &got {
        let tag = p.payload.as_ref().unwrap()["tag"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(tag == "t3" || tag == "t5");
    }

    // Upsert replaces: same id, new vector and payload; the count does not change.
    let mut moved = points(17..18, 8);
    moved[0].vector = vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0];
    moved[0].payload = json!({"group": 9}).as_object().unwrap().clone();
    c.upsert(moved).unwrap();
    assert_eq!(c.count(None), 400);
    let got = c.get(&[PointId::Num(17)], true);
    assert_eq!(got[0].payload["group"], 9);
    assert_eq!(got[0].vector, vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);

    // Delete by id and by filter.
    c.delete(vec![PointId::Num(17), PointId::Num(99_999)])
        .unwrap();
    assert_eq!(c.count(None), 399);
    assert!(c.get(&[PointId::Num(17)], false).is_empty());
    let removed = c
        .delete_matching(&filter(
            json!({"must": [{"key": "group", "match": {"value": 0}}]}),
        ))
        .unwrap();
    assert_eq!(removed, 100);
    assert_eq!(c.count(None), 299);
    let found = search(&c, points(4..5, 8)[0].vector.clone(), 20, None);
    assert!(
        found
            .iter()
            .all(|p| p.payload.as_ref().unwrap()["group"] != 0)
    );

    // Paging through everything in id order.
    let (page, next) = c.scroll(None, None, 5);
    assert_eq!(ids_of(&page), vec![1, 2, 3, 5, 6]);
    let (page, _) = c.scroll(None, next.as_ref(), 3);
    assert_eq!(ids_of(&page), vec![7, 9, 10]);
}

fn ids_of(points: &[Point]) -> Vec<u64> {
    points
        .iter()
        .map(|p| match p.id {
            PointId::Num(n) => n,
            _ => panic!("numeric ids here"),
        })
        .collect()
}

#[test]
fn writes_survive_a_restart_through_the_log_and_through_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let query = points(5..6, 16)[0].vector.clone();
    let before;
    {
        let store = Collections::open(dir.path()).unwrap();
        let c = store.create("kb", config(16, Metric::Dot)).unwrap();
        c.upsert(points(0..300, 16)).unwrap();
        c.snapshot().unwrap();
        assert_eq!(c.info().wal_bytes, 0);
        // After the snapshot: more writes that live only in the log.
        c.upsert(points(300..3000, 16)).unwrap();
        c.delete(vec![PointId::Num(5)]).unwrap();
        before = search(&c, query.clone(), 10, None);
        assert!(c.info().wal_bytes > 0);
        // Dropped without a clean shutdown: no final snapshot.
    }
    let store = Collections::open(dir.path()).unwrap();
    let c = store.get("kb").unwrap();
    assert_eq!(c.count(None), 2999);
    assert!(c.get(&[PointId::Num(5)], false).is_empty());
    assert_eq!(ids(&search(&c, query.clone(), 10, None)), ids(&before));
    assert_eq!(c.info().sequence, 3);

    // A torn last record (crash mid-append) loses only that unacknowledged record.
    drop(store);
    let wal = dir.path().join("kb/wal.log");
    let len = std::fs::metadata(&wal).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let store = Collections::open(dir.path()).unwrap();
    let c = store.get("kb").unwrap();
    assert_eq!(
        c.count(None),
        3000,
        "the torn delete of point 5 is gone, the rest is there"
    );
}

#[test]
fn compaction_drops_tombstones_and_keeps_answers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Collections::open(dir.path()).unwrap();
    let c = store.create("c", config(8, Metric::Euclid)).unwrap();
    c.upsert(points(0..3000, 8)).unwrap();
    c.delete((0..2000).map(PointId::Num).collect()).unwrap();
    let q = points(2500..2501, 8)[0].vector.clone();
    let before = search(&c, q.clone(), 5, None);
    assert_eq!(c.info().indexed_nodes, 3000);
    c.snapshot().unwrap();
    let info = c.info();
    assert_eq!((info.indexed_nodes, info.points_count), (1000, 1000));
    assert_eq!(ids(&search(&c, q.clone(), 5, None)), ids(&before));
    assert_eq!(before[0].id, PointId::Num(2500));
    assert_eq!(before[0].score, 0.0, "Euclidean distance to itself");
}

#[test]
fn exported_snapshots_restore_into_a_new_collection() {
    let dir = tempfile::tempdir().unwrap();
    let store = Collections::open(&dir.path().join("store")).unwrap();
    let c = store
        .create(
            "a",
            CollectionConfig {
                quantize: true,
                ..config(16, Metric::Cosine)
            },
        )
        .unwrap();
    c.upsert(points(0..2500, 16)).unwrap();
    assert!(c.info().quantized);
    let file = dir.path().join("a.snapshot");
    c.export_snapshot(&file).unwrap();
    let b = store.restore("b", &file).unwrap();
    assert_eq!(b.count(None), 2500);
    assert!(b.info().quantized);
    let q = points(1234..1235, 16)[0].vector.clone();
    assert_eq!(
        ids(&search(&b, q.clone(), 10, None)),
        ids(&search(&c, q, 10, None))
    );
    assert!(matches!(
        store.restore("c", &dir.path().join("missing")),
        Err(Error::Io(_))
    ));
    std::fs::write(dir.path().join("junk"), b"not a snapshot at all").unwrap();
    assert!(matches!(
        store.restore("c", &dir.path().join("junk")),
        Err(Error::Corrupt { .. })
    ));
    store.delete("a").unwrap();
    assert!(matches!(store.get("a"), Err(Error::NotFound(_))));
    drop(store);
    let store = Collections::open(&dir.path().join("store")).unwrap();
    assert_eq!(
        store
            .list()
            .iter()
            .map(|c| c.name().to_owned())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Collections::open(dir.path()).unwrap();
    let c = store.create("x", config(4, Metric::Cosine)).unwrap();
    c.upsert(points(0..10, 4)).unwrap();
    let mut batch = points(10..20, 4);
    batch[5].vector.push(1.0);
    let err = c.upsert(batch).unwrap_err().to_string();
    assert!(
        err.contains("point 15 has dimension 5, collection `x` expects 4"),
        "{err}"
    );
    assert_eq!(c.count(None), 10, "the whole batch is refused");
    let mut nan = points(10..11, 4);
    nan[0].vector[0] = f32::NAN;
    assert!(c.upsert(nan).unwrap_err().to_string().contains("NaN"));
    let err = c
        .search(&SearchRequest::new(vec![1.0; 3], 5))
        .unwrap_err()
        .to_string();
    assert!(err.contains("query vector has dimension 3"), "{err}");
    assert!(c.search(&SearchRequest::new(vec![1.0; 4], 0)).is_err());
    assert!(matches!(
        store.create("x", config(4, Metric::Dot)),
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store.create("../etc", config(4, Metric::Dot)),
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        store.create("y", config(0, Metric::Dot)),
        Err(Error::BadRequest(_))
    ));
    assert!(matches!(
        Collections::open(dir.path()),
        Err(Error::Conflict(m)) if m.contains("in use by another process")
    ));
}

#[test]
fn searches_run_while_a_bulk_upsert_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = Collections::open(dir.path()).unwrap();
    let c = store.create("live", config(8, Metric::Cosine)).unwrap();
    c.upsert(points(0..500, 8)).unwrap();
    let q = points(3..4, 8)[0].vector.clone();
    std::thread::scope(|s| {
        let writer = s.spawn(|| c.upsert(points(500..6000, 8)).unwrap());
        let mut answered = 0;
        while !writer.is_finished() {
            let found = search(&c, q.clone(), 5, None);
            assert_eq!(found[0].id, PointId::Num(3));
            answered += 1;
        }
        writer.join().unwrap();
        assert!(
            answered > 1,
            "searches were answered during the bulk upsert"
        );
    });
    assert_eq!(c.count(None), 6000);
}

#[test]
fn the_embedded_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Collections::open(dir.path()).unwrap();
    vector::conformance::run(&store, "conf_");
}
