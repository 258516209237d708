//! Proxied artifacts: upload, list, download, and refusal of escaping paths.

use crate::support::start;

const A: &str = "/api/2.0/mlflow-artifacts/artifacts";

#[tokio::test]
async fn upload_list_download() {
    let s = start(Default::default()).await;
    let put = |path: &str, body: Vec<u8>| {
        let req = s.http.put(format!("{}{A}/{path}", s.url)).body(body);
        async move { req.send().await.expect("put").status().as_u16() }
    };
    assert_eq!(
        put("1/r1/artifacts/model/weights.bin", vec![1, 2, 3]).await,
        200
    );
    assert_eq!(
        put("1/r1/artifacts/notes.txt", b"hello".to_vec()).await,
        200
    );
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    assert_eq!(put("1/r1/artifacts/big.bin", big.clone()).await, 200);

    let (_, v) = s.get(A, &[("path", "1/r1/artifacts")]).await;
    assert_eq!(
        v["files"],
        serde_json::json!([
            {"path": "big.bin", "is_dir": false, "file_size": 3_000_000},
            {"path": "model", "is_dir": true},
            {"path": "notes.txt", "is_dir": false, "file_size": 5}
        ])
    );
    let (_, v) = s.get(A, &[("path", "1/r1/artifacts/notes.txt")]).await;
    assert_eq!(
        v,
        serde_json::json!({}),
        "listing a file is empty, as in MLflow"
    );

    let r = s
        .http
        .get(format!("{}{A}/1/r1/artifacts/big.bin", s.url))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.bytes().await.expect("bytes").to_vec(), big);
    let (st, v) = s.get(&format!("{A}/1/r1/artifacts/missing.txt"), &[]).await;
    assert_eq!(
        (st, v["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST"))
    );
}

#[tokio::test]
async fn paths_cannot_escape() {
    let s = start(Default::default()).await;
    for bad in [
        "1/r/artifacts/..%2F..%2Fetc%2Fpasswd",
        "%2Fetc%2Fpasswd",
        "1/r/a%5C..%5Cb",
    ] {
        let r = s
            .http
            .put(format!("{}{A}/{bad}", s.url))
            .body("x")
            .send()
            .await
            .expect("put");
        assert_eq!(r.status().as_u16(), 400, "{bad}");
        let v: serde_json::Value = r.json().await.expect("json");
        assert_eq!(v["error_code"], "INVALID_PARAMETER_VALUE", "{bad}");
    }
    let (st, _) = s.get(A, &[("path", "../..")]).await;
    assert_eq!(st, 400);
    // HTTP clients normalise `..` away; a raw request sends it as is.
    for raw in ["1/../../x", "1/%2E%2E/%2E%2E/x"] {
        assert!(
            raw_status(&s.url, "PUT", &format!("{A}/{raw}"))
                .await
                .starts_with("HTTP/1.1 400"),
            "{raw}"
        );
    }
}

async fn raw_status(url: &str, method: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"
    );
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.expect("read");
    out
}

#[tokio::test]
async fn artifact_size_limit() {
    let s = start(server::ServerConfig {
        max_artifact_bytes: 1000,
        ..Default::default()
    })
    .await;
    let r = s
        .http
        .put(format!("{}{A}/1/r/artifacts/big", s.url))
        .body(vec![0u8; 1001])
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 413);
    let (_, v) = s.get(A, &[("path", "1/r/artifacts")]).await;
    assert_eq!(
        v,
        serde_json::json!({}),
        "a refused upload leaves nothing visible"
    );
}
