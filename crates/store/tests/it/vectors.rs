//! pgvector (PostgreSQL 18 + pgvector 0.8, started by scripts/test.sh on port 5434) passes the
//! same conformance suite as the embedded vector store.

pub fn pgvector_url() -> String {
    std::env::var("CAPSTAN_TEST_PGVECTOR")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5434/postgres".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgvector_passes_the_vector_store_conformance_suite() {
    let url = pgvector_url();
    let store = store::PgVectors::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("pgvector at {url} (scripts/test.sh starts it): {e}"));
    let prefix = format!("conf_{}_", std::process::id());
    tokio::task::spawn_blocking(move || vector::conformance::run(&store, &prefix))
        .await
        .expect("conformance suite");
}
