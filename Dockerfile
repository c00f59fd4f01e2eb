# Runtime image for mcp-ledger (the deployable stack is completed in the operations work).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY domain domain
COPY commands commands
COPY projections projections
COPY infra infra
COPY api api
COPY mcp_adapter mcp_adapter
COPY cli cli
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home /app ledger
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1
USER ledger
WORKDIR /app
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health/ready').status != 200)"
ENTRYPOINT ["mcp-ledger"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
