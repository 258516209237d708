"""The real `openai` Python client against `capstan server`: embeddings served by the in-process
MiniLM (the client asks for base64 and decodes it), chat and completions from the in-process
SmolLM2 through the gateway (whole and streamed), the model list, and OpenAI-shaped errors."""
import math

import openai
import pytest


@pytest.fixture()
def client(capstan_url):
    return openai.OpenAI(base_url=f"{capstan_url}/v1", api_key="unused", max_retries=0)


def test_embeddings_and_models(client):
    r = client.embeddings.create(model="all-MiniLM-L6-v2", input=["Cargo builds crates.", "Rain keeps riders home."])
    assert len(r.data) == 2
    assert [d.index for d in r.data] == [0, 1]
    v = r.data[0].embedding
    assert len(v) == 384
    assert math.isclose(sum(x * x for x in v), 1.0, rel_tol=1e-4)
    assert r.usage.prompt_tokens >= 8
    # Same text, same vector, whichever encoding the client picks.
    f = client.embeddings.create(model="all-MiniLM-L6-v2", input="Cargo builds crates.", encoding_format="float")
    assert max(abs(a - b) for a, b in zip(f.data[0].embedding, v)) < 1e-6
    ids = [m.id for m in client.models.list().data]
    assert ids[0] == "all-MiniLM-L6-v2" and "smollm2" in ids


def test_errors_have_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[])
    assert "input" in str(e.value)


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_chat_whole_and_streamed(client):
    r = client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=0, max_tokens=16)
    assert r.choices[0].message.content == "The capital of France is Paris."
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens == 7 and r.usage.prompt_tokens > 20
    raw = client.chat.completions.with_raw_response.create(
        model="smollm2", messages=QUESTION, temperature=0, max_tokens=16)
    assert raw.headers["x-capstan-cache"] == "hit"
    assert raw.headers["x-capstan-deployment"] == "smollm2/local"
    pieces, usage = [], None
    for chunk in client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Name a colour."}], temperature=0,
            max_tokens=8, stream=True, stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert len(pieces) >= 2 and "".join(pieces).strip()
    assert usage is not None and usage.completion_tokens <= 8
    c = client.completions.create(model="smollm2", prompt="The capital of France is", max_tokens=3, temperature=0)
    assert c.choices[0].text


def test_chat_errors_have_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-nope", messages=QUESTION)
    assert e.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="smollm2", messages=QUESTION, temperature=5)
    assert e.value.body["param"] == "temperature"
