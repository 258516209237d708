"""The real `mlflow` client's model-registry calls, unchanged, against Capstan."""
import uuid

import pytest
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient


def _name(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _run_with_rmse(client, rmse):
    run = client.create_run("0")
    client.log_batch(run.info.run_id, metrics=[Metric("rmse", rmse, 0, 0)])
    client.set_tag(run.info.run_id, "mlflow.source.git.commit", "deadbeef")
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_registry_workflow(mlflow):
    client = MlflowClient()
    name = _name("churn")
    rm = client.create_registered_model(name, tags={"team": "ml"}, description="predicts churn")
    assert rm.name == name and rm.description == "predicts churn"
    run_a = _run_with_rmse(client, 0.30)
    run_b = _run_with_rmse(client, 0.25)
    v1 = client.create_model_version(name, f"runs:/{run_a}/model", run_id=run_a)
    v2 = client.create_model_version(name, f"runs:/{run_b}/model", run_id=run_b, tags={"stage": "candidate"})
    assert (v1.version, v2.version) == ("1", "2")
    assert v2.status == "READY" and v2.run_id == run_b and v2.tags == {"stage": "candidate"}

    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    client.set_registered_model_alias(name, "champion", 2)
    got = client.get_model_version_by_alias(name, "champion")
    assert got.version == "2" and got.aliases == ["champion"]
    assert client.get_registered_model(name).aliases == {"champion": "2"}

    versions = client.search_model_versions(f"name='{name}'")
    assert sorted(v.version for v in versions) == ["1", "2"]
    assert [v.version for v in client.search_model_versions(f"run_id='{run_a}'")] == ["1"]
    assert [m.name for m in client.search_registered_models(f"name = '{name}'")] == [name]

    client.update_model_version(name, "1", description="first try")
    assert client.get_model_version(name, "1").description == "first try"
    client.set_model_version_tag(name, "1", "validated", "no")
    assert client.get_model_version(name, "1").tags["validated"] == "no"
    client.delete_model_version_tag(name, "1", "validated")
    assert "validated" not in client.get_model_version(name, "1").tags

    with pytest.warns(FutureWarning):
        client.transition_model_version_stage(name, "2", "Production", archive_existing_versions=True)
    with pytest.warns(FutureWarning):
        latest = client.get_latest_versions(name, stages=["Production"])
    assert [v.version for v in latest] == ["2"]
    assert client.get_model_version_download_uri(name, "2") == f"runs:/{run_b}/model"

    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(name, "champion")
    client.delete_model_version(name, "1")
    assert [v.version for v in client.search_model_versions(f"name='{name}'")] == ["2"]
    client.rename_registered_model(name, name + "-renamed")
    assert client.get_model_version(name + "-renamed", "2").run_id == run_b
    client.delete_registered_model(name + "-renamed")
    with pytest.raises(MlflowException) as e:
        client.get_registered_model(name + "-renamed")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_promotion_gate_and_errors(mlflow):
    client = MlflowClient()
    name = _name("gated")
    client.create_registered_model(name)
    client.set_registered_model_tag(name, "capstan.check.rmse", "metrics.rmse < 0.28")
    weak = client.create_model_version(name, "runs:/x/model", run_id=_run_with_rmse(client, 0.31))
    good = client.create_model_version(name, "runs:/y/model", run_id=_run_with_rmse(client, 0.2))
    with pytest.raises(MlflowException) as e:
        client.set_registered_model_alias(name, "champion", weak.version)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "rmse" in str(e.value)
    client.set_registered_model_alias(name, "champion", good.version)
    assert client.get_model_version_by_alias(name, "champion").version == good.version

    with pytest.raises(MlflowException) as e:
        client.create_registered_model(name)
    assert e.value.error_code == "RESOURCE_ALREADY_EXISTS"
    with pytest.raises(MlflowException) as e:
        client.get_model_version(name, "99")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as e:
        client.create_model_version(_name("missing"), "runs:/z/model")
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
