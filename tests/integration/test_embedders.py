"""The embedders: the default ONNX MiniLM (real model), and the OpenAI-compatible HTTP client
against a real local HTTP server that answers like such an endpoint."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from infra.search.embeddings import HttpEmbedder, MiniLmOnnx
from projections.vector_index import Generation, IndexMismatch, check_model
from projections.vector_ports import EmbeddingUnavailable


@pytest.fixture(scope="module")
def minilm() -> MiniLmOnnx:
    return MiniLmOnnx(batch_size=4)


def test_minilm_vectors_are_normalised_and_meaningful(minilm) -> None:
    texts = ["weather forecast for tomorrow", "will it rain in Oslo", "refund a card payment"]
    v = minilm.embed(texts)
    assert v.shape == (3, 384)
    assert v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_minilm_batches_give_the_same_vectors_as_single_texts(minilm) -> None:
    texts = ["a", "a much longer sentence about invoices and their payment terms", "b c", "d"] * 3
    batched = minilm.embed(texts)
    single = np.vstack([minilm.embed([t]) for t in texts])
    assert np.allclose(batched, single, atol=1e-4)
    assert minilm.embed([]).shape == (0, 384)


class Endpoint:
    """A local OpenAI-compatible /embeddings endpoint with scripted failures."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_next: list[int] = []  # status codes to answer before succeeding
        self.delay = 0.0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                endpoint.requests.append({"body": body, "auth": self.headers.get("Authorization")})
                time.sleep(endpoint.delay)
                if endpoint.fail_next:
                    self.send_response(endpoint.fail_next.pop(0))
                    self.end_headers()
                    return
                data = [{"index": i, "embedding": [float(len(t)), 1.0, 0.0]}
                        for i, t in reversed(list(enumerate(body["input"])))]  # fmt: skip
                out = json.dumps({"data": data, "model": body["model"]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    e = Endpoint()
    yield e
    e.server.shutdown()


def test_http_embedder_batches_orders_and_normalises(endpoint) -> None:
    e = HttpEmbedder(endpoint.url, "m1", "secret-key", batch_size=2, backoff=0.01)
    v = e.embed(["a", "bbb", "cc", "dddd", "e"])
    assert len(endpoint.requests) == 3
    assert endpoint.requests[0]["body"] == {"model": "m1", "input": ["a", "bbb"]}
    assert endpoint.requests[0]["auth"] == "Bearer secret-key"
    expected = np.array([[n, 1, 0] for n in (1, 3, 2, 4, 1)], dtype=np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(v, expected)
    assert e.dimension == 3


def test_http_embedder_retries_server_errors_then_succeeds(endpoint) -> None:
    endpoint.fail_next = [503, 429]
    e = HttpEmbedder(endpoint.url, "m1", backoff=0.01)
    assert e.embed(["x"]).shape == (1, 3)
    assert len(endpoint.requests) == 3


def test_http_embedder_gives_up_with_a_clear_error(endpoint) -> None:
    endpoint.fail_next = [500] * 10
    with pytest.raises(EmbeddingUnavailable, match="after 3 attempts: HTTP 500"):
        HttpEmbedder(endpoint.url, "m1", retries=2, backoff=0.01).embed(["x"])
    endpoint.fail_next = [401]
    with pytest.raises(EmbeddingUnavailable, match="HTTP 401"):
        HttpEmbedder(endpoint.url, "m1", backoff=0.01).embed(["x"])


def test_http_embedder_times_out(endpoint) -> None:
    endpoint.delay = 1.0
    e = HttpEmbedder(endpoint.url, "m1", timeout=0.2, retries=1, backoff=0.01)
    with pytest.raises(EmbeddingUnavailable, match="Timeout"):
        e.embed(["x"])


def test_http_embedder_refuses_vectors_of_another_dimension(endpoint) -> None:
    with pytest.raises(EmbeddingUnavailable, match="expected 384"):
        HttpEmbedder(endpoint.url, "m1", dimension=384).embed(["x"])


def test_an_index_of_another_model_is_a_clear_error(minilm) -> None:
    check_model(Generation("g", minilm.model, 384), minilm)
    with pytest.raises(
        IndexMismatch, match=r"built with other-model .384 dimensions.*rebuild vectors"
    ):
        check_model(Generation("g", "other-model", 384), minilm)
