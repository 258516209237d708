"""The real `mlflow` 3.x client, unchanged, against Capstan: logging, search, artifacts, errors."""
import os
import uuid

import pytest
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_fluent_workflow_with_artifacts(mlflow, tmp_path):
    exp_name = _name("fluent")
    exp_id = mlflow.set_experiment(exp_name).experiment_id
    with mlflow.start_run(run_name="first") as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_params({"solver": "lbfgs", "max_iter": 100})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8})
        mlflow.set_tag("team", "ml")
        mlflow.log_text("hello capstan", "notes/hello.txt")
        mlflow.log_dict({"a": 1, "b": [1, 2]}, "config.json")
        blob = os.urandom(3 * 1024 * 1024)
        big = tmp_path / "big.bin"
        big.write_bytes(blob)
        mlflow.log_artifact(str(big), artifact_path="data")
        run_id = run.info.run_id

    client = MlflowClient()
    got = client.get_run(run_id)
    assert got.info.status == "FINISHED"
    assert got.info.run_name == "first"
    assert got.info.experiment_id == exp_id
    assert got.data.params == {"alpha": "0.5", "solver": "lbfgs", "max_iter": "100"}
    assert got.data.metrics["loss"] == pytest.approx(0.2)
    assert got.data.metrics["acc"] == pytest.approx(0.9)
    assert got.data.tags["team"] == "ml"
    history = client.get_metric_history(run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2, 3, 4]
    assert [round(m.value, 4) for m in history] == [1.0, 0.5, 0.3333, 0.25, 0.2]

    top = sorted((f.path, f.is_dir) for f in client.list_artifacts(run_id))
    assert top == [("config.json", False), ("data", True), ("notes", True)]
    sub = client.list_artifacts(run_id, "data")
    assert [(f.path, f.file_size) for f in sub] == [("data/big.bin", 3 * 1024 * 1024)]
    out = client.download_artifacts(run_id, "", str(tmp_path / "dl"))
    assert open(os.path.join(out, "notes", "hello.txt")).read() == "hello capstan"
    assert open(os.path.join(out, "data", "big.bin"), "rb").read() == blob
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json") == {"a": 1, "b": [1, 2]}


def test_search_filter_order_and_pages(mlflow):
    client = MlflowClient()
    exp_id = client.create_experiment(_name("search"))
    ids = []
    for i in range(7):
        r = client.create_run(exp_id, run_name=f"r{i}")
        client.log_batch(
            r.info.run_id,
            metrics=[Metric("rmse", 1.0 - i * 0.1, 0, 0)],
            params=[Param("solver", "adam" if i % 2 else "lbfgs")],
            tags=[RunTag("idx", str(i))],
        )
        client.set_terminated(r.info.run_id)
        ids.append(r.info.run_id)

    runs = client.search_runs([exp_id], "metrics.rmse < 0.75 and params.solver = 'lbfgs'", order_by=["metrics.rmse ASC"])
    assert [r.info.run_name for r in runs] == ["r6", "r4"]

    page1 = client.search_runs([exp_id], "", order_by=["metrics.rmse DESC"], max_results=3)
    assert [r.info.run_name for r in page1] == ["r0", "r1", "r2"]
    assert page1.token
    page2 = client.search_runs([exp_id], "", order_by=["metrics.rmse DESC"], max_results=3, page_token=page1.token)
    page3 = client.search_runs([exp_id], "", order_by=["metrics.rmse DESC"], max_results=3, page_token=page2.token)
    assert [r.info.run_name for r in page2 + page3] == ["r3", "r4", "r5", "r6"]
    assert not page3.token

    df = mlflow.search_runs([exp_id], filter_string="tags.idx = '3'")
    assert list(df["run_id"]) == [ids[3]]
    assert list(df["metrics.rmse"]) == [pytest.approx(0.7)]

    client.delete_run(ids[0])
    assert len(client.search_runs([exp_id], "", run_view_type=ViewType.ACTIVE_ONLY)) == 6
    assert [r.info.run_id for r in client.search_runs([exp_id], "", run_view_type=ViewType.DELETED_ONLY)] == [ids[0]]
    client.restore_run(ids[0])
    assert len(client.search_runs([exp_id], "")) == 7

    exps = client.search_experiments(filter_string="name LIKE 'search-%'")
    assert exp_id in [e.experiment_id for e in exps]


def test_experiment_lifecycle_and_inputs(mlflow):
    import pandas as pd

    client = MlflowClient()
    name = _name("life")
    exp_id = client.create_experiment(name, tags={"owner": "capstan"})
    assert client.get_experiment_by_name(name).tags["owner"] == "capstan"
    client.rename_experiment(exp_id, name + "-renamed")
    assert client.get_experiment(exp_id).name == name + "-renamed"
    assert client.get_experiment_by_name(name) is None
    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"

    mlflow.set_experiment(experiment_id=exp_id)
    df = pd.DataFrame({"x": [1, 2, 3], "y": [2, 4, 6]})
    dataset = mlflow.data.from_pandas(df, name="tiny", targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("tiny", dataset.digest)]
    assert client.search_runs([exp_id], f"datasets.digest = '{dataset.digest}'")[0].info.run_id == run.info.run_id


def test_errors_reach_the_client_with_mlflow_codes(mlflow):
    client = MlflowClient()
    with pytest.raises(MlflowException) as e:
        client.get_run("0123456789abcdef0123456789abcdef")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    name = _name("dup")
    client.create_experiment(name)
    with pytest.raises(MlflowException) as e:
        client.create_experiment(name)
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"

    run = client.create_run("0")
    client.log_param(run.info.run_id, "lr", "0.1")
    client.log_param(run.info.run_id, "lr", "0.1")
    with pytest.raises(MlflowException) as e:
        client.log_param(run.info.run_id, "lr", "0.2")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "lr" in str(e.value)

    with pytest.raises(MlflowException) as e:
        client.search_runs(["0"], "metrics.a < 1 or metrics.b > 2")
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"

    client.log_metric(run.info.run_id, "maybe", float("nan"))
    assert client.get_run(run.info.run_id).data.metrics["maybe"] != client.get_run(run.info.run_id).data.metrics["maybe"]
