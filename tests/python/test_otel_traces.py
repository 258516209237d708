"""The real OpenTelemetry Python SDK exporting to `capstan server` over OTLP/HTTP (protobuf,
gzip-compressed, with MLflow's experiment header): nested spans with GenAI attributes, an error
with an exception event, read back through Capstan's trace API as one tree."""
import json
import urllib.request

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Status, StatusCode


def _get(url):
    with urllib.request.urlopen(url) as r:
        return json.loads(r.read())


def test_sdk_exporter_spans_arrive_as_one_trace(capstan_url):
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-py-app"}))
    exporter = OTLPSpanExporter(
        endpoint=f"{capstan_url}/v1/traces",
        compression=Compression.Gzip,
        headers={"x-mlflow-experiment-id": "0"},
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("capstan.tests")

    with tracer.start_as_current_span("answer question") as root:
        root.set_attribute("user.id", "grace")
        with tracer.start_as_current_span("chat gpt-4o-mini") as llm:
            llm.set_attribute("gen_ai.operation.name", "chat")
            llm.set_attribute("gen_ai.provider.name", "openai")
            llm.set_attribute("gen_ai.request.model", "gpt-4o-mini")
            llm.set_attribute("gen_ai.usage.input_tokens", 321)
            llm.set_attribute("gen_ai.usage.output_tokens", 45)
            llm.set_attribute("gen_ai.usage.cache_read.input_tokens", 128)
            llm.set_attribute("gen_ai.request.stop_sequences", ["\n\n", "END"])
        with tracer.start_as_current_span("parse answer") as bad:
            try:
                raise ValueError("no citation in the answer")
            except ValueError as e:
                bad.record_exception(e)
                bad.set_status(Status(StatusCode.ERROR, "no citation"))
        trace_id = format(root.get_span_context().trace_id, "032x")
    assert provider.force_flush(10_000)
    provider.shutdown()

    found = _get(f"{capstan_url}/api/2.0/capstan/traces?service=otel-py-app")["traces"]
    assert [t["trace_id"] for t in found] == [trace_id]
    t = found[0]
    assert t["name"] == "answer question"
    assert (t["spans"], t["errors"], t["status"]) == (3, 1, "error")
    assert (t["input_tokens"], t["output_tokens"]) == (321, 45)
    assert (t["model"], t["user"], t["experiment_id"]) == ("gpt-4o-mini", "grace", "0")

    tree = _get(f"{capstan_url}/api/2.0/capstan/traces/{trace_id}")
    spans = {s["name"]: s for s in tree["spans"]}
    assert [(s["name"], s["depth"]) for s in tree["spans"]] == [
        ("answer question", 0), ("chat gpt-4o-mini", 1), ("parse answer", 1)]
    llm = spans["chat gpt-4o-mini"]
    assert llm["scope"] == "capstan.tests"
    assert llm["genai"]["cache_read_tokens"] == 128
    assert llm["attributes"]["gen_ai.request.stop_sequences"] == ["\n\n", "END"]
    assert llm["resource"]["telemetry.sdk.language"] == "python"
    bad = spans["parse answer"]
    assert (bad["status"], bad["status_message"]) == ("error", "no citation")
    assert bad["events"][0]["name"] == "exception"
    assert bad["events"][0]["attributes"]["exception.type"] == "ValueError"

    # (Other tests share this server: the gateway's own spans are grouped under their models.)
    by_model = {g["key"]: g for g in _get(f"{capstan_url}/api/2.0/capstan/traces/stats?by=model")["groups"]}
    assert (by_model["gpt-4o-mini"]["spans"], by_model["gpt-4o-mini"]["input_tokens"]) == (1, 321)
