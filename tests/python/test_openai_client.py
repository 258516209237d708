"""The real `openai` Python client against `capstan server`: embeddings served by the in-process
MiniLM (the client asks for base64 and decodes it), the model list, and OpenAI-shaped errors."""
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
    assert [m.id for m in client.models.list().data] == ["all-MiniLM-L6-v2"]


def test_errors_have_openai_shape(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert e.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[])
    assert "input" in str(e.value)
