"""BM25 sparse vectors, computed in this process by Qdrant's own tokenizer (qdrant-edge-py:
English tokens, stop words, Snowball stemming): term frequencies for documents, 1.0 per query
token. The store applies IDF over the collection (the `Idf` modifier), so the index ranks like
BM25 and stays exact as documents come and go. The same vectors go to Qdrant Edge and to a
Qdrant server."""

from __future__ import annotations

import threading
from typing import Any

from projections.vector_ports import SparseVector


class Bm25Encoder:
    name = "qdrant-bm25-en-v1"

    def __init__(self) -> None:
        self._models: dict[float, Any] = {}
        self._lock = threading.Lock()

    def _model(self, avg_len: float) -> Any:
        model = self._models.get(avg_len)
        if model is None:
            from qdrant_edge import Bm25, Bm25Config

            with self._lock:
                model = self._models.setdefault(avg_len, Bm25(Bm25Config(avg_len=avg_len)))
        return model

    def document(self, text: str, avg_len: float) -> SparseVector:
        vector = self._model(avg_len).embed_document(text)
        return SparseVector(list(vector.indices), list(vector.values))

    def query(self, text: str) -> SparseVector:
        vector = self._model(DEFAULT_AVG_LEN).embed_query(text)
        return SparseVector(list(vector.indices), list(vector.values))


DEFAULT_AVG_LEN = 100.0
