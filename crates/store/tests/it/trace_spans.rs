//! Traces on SQLite and PostgreSQL: spans arriving in pieces roll up into one trace, a span sent
//! twice counts once, searches filter and page, aggregates group, retention compacts.

use crate::db_test;
use serde_json::json;
use store::Db;
use traces::{GroupBy, Span, Status, TraceFilter, TraceStore};

const T0: i64 = 1_760_000_000_000_000_000;

fn span(
    trace: u8,
    id: u8,
    parent: u8,
    name: &str,
    start_ms: i64,
    dur_ms: i64,
    attrs: serde_json::Value,
) -> Span {
    Span {
        trace_id: format!("{trace:032x}"),
        span_id: format!("{id:016x}"),
        parent_span_id: if parent == 0 {
            String::new()
        } else {
            format!("{parent:016x}")
        },
        name: name.to_owned(),
        kind: 1,
        start_ns: T0 + start_ms * 1_000_000,
        end_ns: T0 + (start_ms + dur_ms) * 1_000_000,
        status: Status::Ok,
        service: "rag-app".into(),
        scope: "test".into(),
        attributes: attrs.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    }
}

#[allow(clippy::too_many_arguments)]
fn llm(
    trace: u8,
    id: u8,
    parent: u8,
    model: &str,
    user: &str,
    start_ms: i64,
    dur_ms: i64,
    tokens: (i64, i64),
    cost: f64,
) -> Span {
    span(
        trace,
        id,
        parent,
        &format!("chat {model}"),
        start_ms,
        dur_ms,
        json!({"gen_ai.operation.name": "chat", "gen_ai.request.model": model, "user.id": user,
               "gen_ai.usage.input_tokens": tokens.0, "gen_ai.usage.output_tokens": tokens.1,
               "gen_ai.usage.cost_usd": cost, "gen_ai.prompt": "What is the capital of France?"}),
    )
}

db_test!(spans_roll_up_into_traces, |db: Db| async move {
    // Trace 1: the child first, then the root in another request, then the child again (a retry).
    let child = llm(1, 2, 1, "gpt-4o-mini", "ada", 10, 40, (100, 20), 0.002);
    assert_eq!(
        db.write_spans(std::slice::from_ref(&child)).await.unwrap(),
        1
    );
    let root = span(1, 1, 0, "answer question", 0, 100, json!({}));
    assert_eq!(
        db.write_spans(&[root.clone(), child.clone()])
            .await
            .unwrap(),
        1
    );
    // Trace 2: an error, another model and user.
    let mut bad = llm(2, 1, 0, "claude-haiku", "bob", 1000, 500, (50, 0), 0.001);
    bad.status = Status::Error;
    bad.status_message = "rate limited".into();
    assert_eq!(
        db.write_spans(&[bad.clone(), bad.clone()]).await.unwrap(),
        1
    );

    let all = db
        .search_traces(&TraceFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let t2 = &all[0];
    assert_eq!(
        (t2.trace_id.as_str(), t2.status, t2.errors),
        (bad.trace_id.as_str(), Status::Error, 1)
    );
    let t1 = &all[1];
    assert_eq!(
        t1.name, "answer question",
        "the root's name wins once it arrives"
    );
    assert_eq!((t1.spans, t1.input_tokens, t1.output_tokens), (2, 100, 20));
    assert!((t1.cost_usd - 0.002).abs() < 1e-12);
    assert_eq!(
        (t1.model.as_str(), t1.user.as_str()),
        ("gpt-4o-mini", "ada")
    );
    assert_eq!(t1.duration_ms, 100.0);

    // The trace reads back whole, ordered by start.
    let spans = db.trace(&root.trace_id).await.unwrap();
    assert_eq!(spans, vec![root.clone(), child.clone()]);
    assert!(matches!(
        db.trace(&"f".repeat(32)).await,
        Err(traces::Error::NotFound(_))
    ));

    // Filters.
    let f = |f: TraceFilter| {
        let db = db.clone();
        async move {
            db.search_traces(&TraceFilter { limit: 10, ..f })
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.trace_id)
                .collect::<Vec<_>>()
        }
    };
    let (id1, id2) = (root.trace_id.clone(), bad.trace_id.clone());
    assert_eq!(
        f(TraceFilter {
            model: Some("gpt-4o-mini".into()),
            ..Default::default()
        })
        .await,
        vec![id1.clone()]
    );
    assert_eq!(
        f(TraceFilter {
            user: Some("bob".into()),
            ..Default::default()
        })
        .await,
        vec![id2.clone()]
    );
    assert_eq!(
        f(TraceFilter {
            status: Some(Status::Error),
            ..Default::default()
        })
        .await,
        vec![id2.clone()]
    );
    assert_eq!(
        f(TraceFilter {
            status: Some(Status::Ok),
            ..Default::default()
        })
        .await,
        vec![id1.clone()]
    );
    assert_eq!(
        f(TraceFilter {
            min_cost_usd: Some(0.0015),
            ..Default::default()
        })
        .await,
        vec![id1.clone()]
    );
    assert_eq!(
        f(TraceFilter {
            min_duration_ms: Some(200.0),
            ..Default::default()
        })
        .await,
        vec![id2.clone()]
    );
    assert_eq!(
        f(TraceFilter {
            max_duration_ms: Some(200.0),
            ..Default::default()
        })
        .await,
        vec![id1.clone()]
    );
    assert_eq!(
        f(TraceFilter {
            since_ns: Some(T0 + 500_000_000),
            ..Default::default()
        })
        .await,
        vec![id2.clone()]
    );
    // Text: a root name, an attribute of a child span, case-insensitive; wildcards are literal.
    assert_eq!(
        f(TraceFilter {
            text: Some("ANSWER".into()),
            ..Default::default()
        })
        .await,
        vec![id1.clone()]
    );
    assert_eq!(
        f(TraceFilter {
            text: Some("capital of france".into()),
            ..Default::default()
        })
        .await,
        [id1.clone(), id2.clone()]
            .iter()
            .rev()
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(
        f(TraceFilter {
            text: Some("%".into()),
            ..Default::default()
        })
        .await
        .is_empty()
    );
    // Paging: the next page starts after the last trace of this one.
    let page1 = db
        .search_traces(&TraceFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap();
    let before = Some((page1[0].start_ns, page1[0].trace_id.clone()));
    assert_eq!(
        f(TraceFilter {
            before,
            ..Default::default()
        })
        .await,
        vec![id1.clone()]
    );

    // Aggregates per model.
    let by_model = db
        .trace_stats(GroupBy::Model, T0, T0 + 10_000_000_000)
        .await
        .unwrap();
    assert_eq!(by_model.len(), 2);
    let claude = &by_model[0];
    assert_eq!(
        (
            claude.key.as_str(),
            claude.spans,
            claude.errors,
            claude.error_rate
        ),
        ("claude-haiku", 1, 1, 1.0)
    );
    let gpt = &by_model[1];
    assert_eq!(
        (gpt.spans, gpt.input_tokens, gpt.output_tokens),
        (1, 100, 20)
    );
    assert_eq!(gpt.latency_p99_ms, Some(40.0));
    let by_service = db
        .trace_stats(GroupBy::Service, T0, T0 + 10_000_000_000)
        .await
        .unwrap();
    assert_eq!(
        (by_service[0].key.as_str(), by_service[0].spans),
        ("rag-app", 3)
    );

    // Retention: trace 1 (ended at +100 ms) goes, its counts stay as a rollup; trace 2 stays.
    let expired = db.expire(T0 + 200_000_000).await.unwrap();
    assert_eq!((expired.spans, expired.traces), (2, 1));
    assert_eq!(f(TraceFilter::default()).await, vec![id2.clone()]);
    let by_model = db
        .trace_stats(GroupBy::Model, T0, T0 + 10_000_000_000)
        .await
        .unwrap();
    let gpt = by_model.iter().find(|g| g.key == "gpt-4o-mini").unwrap();
    assert_eq!(
        (gpt.spans, gpt.input_tokens, gpt.output_tokens),
        (1, 100, 20)
    );
    assert!((gpt.cost_usd - 0.002).abs() < 1e-12);
    assert_eq!(
        gpt.latency_p99_ms, None,
        "percentiles need the spans themselves"
    );
    // A second pass over the same window changes nothing.
    assert_eq!(db.expire(T0 + 200_000_000).await.unwrap().spans, 0);
});

db_test!(many_spans_in_one_batch, |db: Db| async move {
    let spans: Vec<Span> = (0..240u32)
        .map(|i| {
            let mut s = llm((i % 7) as u8 + 1, 0, 0, "m", "u", i as i64, 5, (1, 1), 0.0);
            s.span_id = format!("{:016x}", i + 1);
            s
        })
        .collect();
    assert_eq!(db.write_spans(&spans).await.unwrap(), 240);
    let all = db
        .search_traces(&TraceFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    assert_eq!(all.iter().map(|t| t.spans).sum::<i64>(), 240);
    assert_eq!(all.iter().map(|t| t.input_tokens).sum::<i64>(), 240);
});
