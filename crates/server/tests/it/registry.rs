//! The MLflow registry endpoints over HTTP: shapes and errors.

use crate::support::{check_error, start};
use serde_json::json;

#[tokio::test]
async fn registry_wire_shapes_and_errors() {
    let s = start(Default::default()).await;
    let p = |x: &str| format!("/api/2.0/mlflow/{x}");
    let (st, v) = s
        .post(
            &p("registered-models/create"),
            json!({"name": "m", "tags": [{"key": "k", "value": "v"}]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["registered_model"]["tags"],
        json!([{"key": "k", "value": "v"}])
    );
    let (_, v) = s
        .post(
            &p("model-versions/create"),
            json!({"name": "m", "source": "runs:/abc/model", "run_id": "abc"}),
        )
        .await;
    assert_eq!(v["model_version"]["version"], "1");
    assert_eq!(v["model_version"]["status"], "READY");
    assert_eq!(v["model_version"]["current_stage"], "None");
    let (st, _) = s
        .post(
            &p("registered-models/alias"),
            json!({"name": "m", "alias": "champion", "version": "1"}),
        )
        .await;
    assert_eq!(st, 200);
    let (_, v) = s
        .get(
            &p("registered-models/alias"),
            &[("name", "m"), ("alias", "champion")],
        )
        .await;
    assert_eq!(v["model_version"]["aliases"], json!(["champion"]));
    let (_, v) = s.get(&p("registered-models/get"), &[("name", "m")]).await;
    assert_eq!(
        v["registered_model"]["aliases"],
        json!([{"alias": "champion", "version": "1"}])
    );
    assert_eq!(v["registered_model"]["latest_versions"][0]["version"], "1");

    check_error(
        s.post(&p("registered-models/create"), json!({"name": "m"}))
            .await,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "m",
    );
    check_error(
        s.get(&p("registered-models/get"), &[("name", "zz")]).await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "zz",
    );
    check_error(
        s.get(&p("model-versions/get"), &[("name", "m"), ("version", "x")])
            .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "version",
    );
    check_error(
        s.get(&p("model-versions/get"), &[("name", "m"), ("version", "7")])
            .await,
        404,
        "RESOURCE_DOES_NOT_EXIST",
        "version=7",
    );
    check_error(
        s.post(&p("model-versions/create"), json!({"name": "m"}))
            .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "source",
    );
    check_error(
        s.post(
            &p("model-versions/transition-stage"),
            json!({"name": "m", "version": "1", "stage": "Live"}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "Live",
    );
    check_error(
        s.get(&p("model-versions/search"), &[("filter", "nonsense ~ 1")])
            .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "",
    );
    check_error(
        s.post(
            &p("registered-models/alias"),
            json!({"name": "m", "alias": "latest", "version": "1"}),
        )
        .await,
        400,
        "INVALID_PARAMETER_VALUE",
        "reserved",
    );

    // DELETE carries a JSON body, as the client sends it.
    let r = s
        .http
        .delete(format!("{}{}", s.url, p("model-versions/delete")))
        .json(&json!({"name": "m", "version": "1"}))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 200);
    let (_, v) = s
        .get(&p("model-versions/search"), &[("filter", "name='m'")])
        .await;
    assert_eq!(v["model_versions"], json!([]));
}
