"""The real MLflow 3 client's tracing against `capstan server`: `@mlflow.trace` spans arrive over
OTLP/HTTP with the experiment header, the trace's `TraceInfo` through StartTraceV3, and the
trace reads back from Capstan's trace API as one tree in that experiment."""
import json
import urllib.request


def _get(url):
    with urllib.request.urlopen(url) as r:
        return json.loads(r.read())


def test_trace_decorator_spans_land_in_capstan(mlflow, capstan_url):
    exp = mlflow.set_experiment("traced-app")

    @mlflow.trace(span_type="LLM")
    def generate(question):
        return "Paris"

    @mlflow.trace
    def answer(question):
        return generate(question).upper()

    assert answer("What is the capital of France?") == "PARIS"
    mlflow.flush_trace_async_logging()
    trace_id = mlflow.get_last_active_trace_id()
    hexid = trace_id.removeprefix("tr-")

    tree = _get(f"{capstan_url}/api/2.0/capstan/traces/{hexid}")
    assert [(s["name"], s["depth"]) for s in tree["spans"]] == [("answer", 0), ("generate", 1)]
    assert all(s["experiment_id"] == exp.experiment_id for s in tree["spans"])
    assert tree["spans"][1]["attributes"]["mlflow.spanType"].strip("\"") == "LLM"

    info = _get(f"{capstan_url}/api/3.0/mlflow/traces/{trace_id}/info")["trace"]["trace_info"]
    assert info["trace_id"] == trace_id
    assert info["trace_location"]["mlflow_experiment"]["experiment_id"] == exp.experiment_id
    found = _get(f"{capstan_url}/api/2.0/capstan/traces?experiment_id={exp.experiment_id}")["traces"]
    assert [t["trace_id"] for t in found] == [hexid]
