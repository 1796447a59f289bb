"""docker-compose.yaml, Dockerfile and docker/ agree with the project (no Docker engine runs here).

The compose file is parsed and checked against what it must run: Airflow's components with
commands the installed Airflow CLI accepts, configuration keys Airflow knows, one PostgreSQL
and one Redis that the URLs point to, the sync state volume on every Airflow container, workers
that can be scaled, and an image built from this repository whose base matches the pinned Airflow.
The init script runs for real against a temporary SQLite home: it migrates, creates the pools and
imports the example connections.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
    "airflow-worker": "celery worker",
}
AIRFLOW_SERVICES = [*COMPONENTS, "airflow-init"]
STATE_DIR = "/var/lib/mailmigrate/state"


def _pin(package: str) -> str:
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.lower().startswith(f"{package}=="):
            return line.split("==")[1]
    raise AssertionError(f"{package} is not pinned in requirements.txt")


def _variables(text: str) -> dict[str, set[str]]:
    """Compose interpolations ``${NAME...}`` and their modifiers (``:-default``, ``:?error``);
    ``$${NAME}`` is the container's own variable, not compose's."""
    found: dict[str, set[str]] = {}
    for match in re.finditer(r"(?<!\$)\$\{(\w+)([:?\-][^}]*)?\}", text):
        found.setdefault(match.group(1), set()).add(match.group(2) or "")
    return found


def _mount(spec: str) -> tuple[str, str]:
    """``source:target[:mode]`` (the source may be a ``${VAR:-default}``) as (target, source)."""
    match = re.fullmatch(r"(\$\{[^}]*\}|[^:]+):([^:]+)(?::(?:ro|rw))?", spec)
    assert match, f"unreadable volume {spec!r}"
    return match.group(2), match.group(1)


def test_the_services_are_airflow_components_with_postgres_and_redis():
    assert set(SERVICES) >= {"postgres", "redis", *AIRFLOW_SERVICES}
    for service, command in COMPONENTS.items():
        assert SERVICES[service]["command"] == command, service
        dependencies = SERVICES[service]["depends_on"]
        assert dependencies["airflow-init"]["condition"] == "service_completed_successfully"
        assert dependencies["postgres"]["condition"] == "service_healthy"
        assert dependencies["redis"]["condition"] == "service_healthy"
        assert "healthcheck" in SERVICES[service], service
    assert SERVICES["airflow-init"]["command"] == ["/opt/mailmigrate/docker/init.sh"]
    assert "flower" not in SERVICES or SERVICES["flower"]["profiles"] == ["flower"]


def test_the_commands_are_ones_the_installed_airflow_cli_accepts(airflow_db):
    from airflow.cli import cli_parser

    parser = cli_parser.get_parser()
    for service, command in COMPONENTS.items():
        args = parser.parse_args(command.split())
        assert callable(args.func), service
    with pytest.raises(SystemExit):
        parser.parse_args(["no-such-component"])


def test_every_airflow_setting_is_one_airflow_knows(airflow_db):
    from airflow.configuration import conf

    known = conf.configuration_description  # core's options and the installed providers'
    for service in AIRFLOW_SERVICES:
        for name in SERVICES[service]["environment"]:
            if name.startswith("AIRFLOW__"):
                section, key = name.removeprefix("AIRFLOW__").lower().split("__", 1)
                options = known.get(section, {}).get("options", {})
                assert key in options, f"{service}: {name} is no Airflow option"


def test_urls_point_to_the_compose_services():
    env = SERVICES["airflow-scheduler"]["environment"]
    postgres = SERVICES["postgres"]["environment"]
    database = f"@postgres/{postgres['POSTGRES_DB']}"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith(database)
    assert postgres["POSTGRES_USER"] == "airflow"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].startswith("db+postgresql://airflow:")
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"].endswith(database)
    assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD[^}]*\}@redis:6379/0",
                        env["AIRFLOW__CELERY__BROKER_URL"])  # fmt: skip
    assert "--requirepass" in SERVICES["redis"]["command"]
    assert (
        env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    )
    assert SERVICES["airflow-apiserver"]["ports"] == [
        "${MAILMIGRATE_BIND_ADDRESS:-127.0.0.1}:${AIRFLOW_PORT:-8080}:8080"
    ]
    assert json.loads(env["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"]) == {
        "worker_disable_prefetch": True
    }
    # Every component shares the secrets: workers' tokens are checked by the api-server.
    for name in (
        "AIRFLOW__CORE__FERNET_KEY",
        "AIRFLOW__API_AUTH__JWT_SECRET",
        "AIRFLOW__API__SECRET_KEY",
    ):
        assert len({SERVICES[s]["environment"][name] for s in AIRFLOW_SERVICES}) == 1, name


def test_every_worker_shares_the_sync_state_volume_and_can_be_scaled():
    volumes = COMPOSE["volumes"]
    for service in AIRFLOW_SERVICES:
        config = SERVICES[service]
        assert config["environment"]["MAILMIGRATE_STATE_DIR"] == STATE_DIR, service
        mounts = dict(_mount(spec) for spec in config["volumes"])
        assert mounts[STATE_DIR] in volumes, f"{service}: {STATE_DIR} is not a named volume"
        assert mounts["/opt/airflow/logs"] in volumes, service
        assert mounts["/opt/mailmigrate/dags"] == "${MAILMIGRATE_DAGS_DIR:-./dags}", service
    worker = SERVICES["airflow-worker"]
    assert not {"container_name", "hostname", "ports"} & set(worker), "workers could not scale"
    assert "deploy" not in worker or "replicas" not in worker["deploy"]


def test_the_image_is_built_from_this_repository_on_the_pinned_airflow():
    for service in AIRFLOW_SERVICES:
        build = SERVICES[service]["build"]
        assert (build["context"], build["dockerfile"]) == (".", "Dockerfile"), service
    assert f"ARG AIRFLOW_VERSION={_pin('apache-airflow')}" in DOCKERFILE
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"ARG PYTHON_VERSION={python}" in DOCKERFILE
    assert "FROM apache/airflow:slim-${AIRFLOW_VERSION}-python${PYTHON_VERSION}" in DOCKERFILE
    assert "pip install --no-cache-dir -r /opt/mailmigrate/requirements.txt" in DOCKERFILE
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", DOCKERFILE, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which does not exist"
    env = SERVICES["airflow-worker"]["environment"]
    assert f"AIRFLOW__CORE__DAGS_FOLDER={env['AIRFLOW__CORE__DAGS_FOLDER']}" in DOCKERFILE
    assert f"AIRFLOW__CORE__PLUGINS_FOLDER={env['AIRFLOW__CORE__PLUGINS_FOLDER']}" in DOCKERFILE
    assert f"MAILMIGRATE_STATE_DIR={STATE_DIR}" in DOCKERFILE


def test_every_variable_is_documented_in_the_env_example():
    documented = {line.split("=")[0] for line in (ROOT / "docker" / "env.example").read_text()
                  .splitlines() if line and not line.startswith("#")}  # fmt: skip
    used = _variables((ROOT / "docker-compose.yaml").read_text())
    assert set(used) - {"MAILMIGRATE_IMAGE"} <= documented
    required = {name for name, modifiers in used.items() if any(m[:2] == ":?" for m in modifiers)}
    assert {"AIRFLOW_FERNET_KEY", "AIRFLOW_JWT_SECRET", "POSTGRES_PASSWORD", "REDIS_PASSWORD",
            "AIRFLOW_ADMIN_PASSWORD"} <= required  # fmt: skip


def test_the_plans_find_their_connections_and_pools_in_docker():
    from mailmigrate.plan import find_plans, load_plan

    connections = json.loads((ROOT / "docker" / "connections.example.json").read_text())
    pools = json.loads((ROOT / "docker" / "pools.json").read_text())
    for path in find_plans(ROOT / "dags" / "plans"):
        plan = load_plan(path)
        assert {plan.source_connection, plan.destination_connection} <= set(connections), path
        assert plan.pool is None or plan.pool in pools, path
        for hinted in re.findall(r"#\s*pool:\s*(\S+)", path.read_text()):
            assert hinted in pools, f"{path} suggests pool {hinted}, which pools.json lacks"
    for conn_id, connection in connections.items():
        assert connection["conn_type"] in ("imap", "ews"), conn_id


def test_the_init_script_migrates_and_provisions_pools_and_connections():
    home = Path(tempfile.mkdtemp(prefix="mailmigrate-init-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MAILMIGRATE_"))}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        AIRFLOW_HOME=str(home),
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "auth" / "passwords.json"),
        AIRFLOW_ADMIN_USER="ops",
        AIRFLOW_ADMIN_PASSWORD='pa"ss word',
        AIRFLOW_UID=str(os.getuid()),
        AIRFLOW_LOGS_DIR=str(home / "logs"),
        MAILMIGRATE_STATE_DIR=str(home / "state"),
        MAILMIGRATE_POOLS_FILE=str(ROOT / "docker" / "pools.json"),
        MAILMIGRATE_CONNECTIONS_FILE=str(ROOT / "docker" / "connections.example.json"),
    )
    init = [str(ROOT / "docker" / "init.sh")]
    for attempt in (1, 2):  # idempotent: a second run changes nothing and succeeds
        done = subprocess.run(init, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"run {attempt}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    def airflow(*args: str) -> str:
        answer = subprocess.run(
            ["airflow", *args], env=env, capture_output=True, text=True, timeout=120
        )
        assert answer.returncode == 0, answer.stderr[-2000:]
        return answer.stdout

    pools = {p["pool"]: p for p in json.loads(airflow("pools", "list", "--output", "json"))}
    expected = json.loads((ROOT / "docker" / "pools.json").read_text())
    for name, pool in expected.items():
        assert int(pools[name]["slots"]) == pool["slots"], pools[name]
    airflow("connections", "export", str(home / "exported.json"))
    connections = json.loads((home / "exported.json").read_text())
    for conn_id, connection in json.loads(
        (ROOT / "docker" / "connections.example.json").read_text()
    ).items():
        stored = connections[conn_id]
        assert (stored["conn_type"], stored["host"], stored["port"], stored["login"]) == (
            connection["conn_type"], connection["host"], connection["port"], connection["login"]
        )  # fmt: skip
        assert json.loads(stored["extra"]) == connection["extra"]
    assert json.loads((home / "auth" / "passwords.json").read_text()) == {"ops": 'pa"ss word'}
    assert (home / "state").is_dir() and (home / "logs").is_dir()


# -- what the deployment exposes ---------------------------------------------------------------


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``, ``$VAR``, and ``$$`` for a literal ``$``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("bare")
        how, word = match.group("how") or "", match.group("word") or ""
        value = env.get(name)
        missing = value is None or (how.startswith(":") and value == "")
        if how.endswith("?") and missing:
            raise ValueError(f"{name}: {word}")
        return word if how.endswith("-") and missing else (value or "")

    pattern = r"\$\$|\$\{(?P<braced>\w+)(?:(?P<how>:?[-?])(?P<word>[^}]*))?\}|\$(?P<bare>\w+)"
    return re.sub(pattern, one, text)


def _published(env: dict[str, str]) -> dict[str, list[str]]:
    """``host address:host port:container port`` of every published port, per service."""
    return {
        name: [interpolate(spec, env) for spec in service.get("ports", [])]
        for name, service in SERVICES.items()
        if service.get("ports")
    }


def test_published_ports_listen_on_loopback_unless_every_interface_is_chosen():
    assert set(_published({})) == {"airflow-apiserver", "flower"}
    assert _published({}) == {"airflow-apiserver": ["127.0.0.1:8080:8080"],
                              "flower": ["127.0.0.1:5555:5555"]}  # fmt: skip
    chosen = _published({"MAILMIGRATE_BIND_ADDRESS": "0.0.0.0", "AIRFLOW_PORT": "80"})
    assert chosen == {"airflow-apiserver": ["0.0.0.0:80:8080"], "flower": ["0.0.0.0:5555:5555"]}
    for service in SERVICES.values():  # nothing else reaches the host
        assert not service.get("network_mode") and "host" not in str(service.get("networks"))
    example = (ROOT / "docker" / "env.example").read_text()
    assert "\nMAILMIGRATE_BIND_ADDRESS=127.0.0.1\n" in example


def test_flower_starts_only_with_basic_auth(tmp_path):
    """Flower's command, as compose hands it to bash, refuses to start without
    FLOWER_BASIC_AUTH, and starts ``airflow celery flower`` with it (a stub ``airflow``
    records the call); its health check logs in."""
    flower = SERVICES["flower"]
    assert flower["entrypoint"] == "/bin/bash" and flower["profiles"] == ["flower"]
    assert interpolate(flower["environment"]["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"], {}) == ""
    script = [interpolate(arg, {}) for arg in flower["command"]]
    stub = tmp_path / "airflow"
    stub.write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/called"\n')
    stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}{os.pathsep}/usr/bin:/bin"}
    refused = subprocess.run(["bash", *script], env=env, capture_output=True, text=True)
    assert refused.returncode == 1 and "FLOWER_BASIC_AUTH" in refused.stderr
    assert not (tmp_path / "called").exists()
    env["AIRFLOW__CELERY__FLOWER_BASIC_AUTH"] = "ops:s3cret"
    started = subprocess.run(["bash", *script], env=env, capture_output=True, text=True)
    assert started.returncode == 0 and (tmp_path / "called").read_text() == "celery flower\n"
    health = interpolate(flower["healthcheck"]["test"][1], {})
    assert '-u "${AIRFLOW__CELERY__FLOWER_BASIC_AUTH%%,*}"' in health


# -- what the image carries --------------------------------------------------------------------

SECRET_FILES = [
    "dags/plans/acme_accounts.csv",
    "dags/plans/acme.yaml",
    "dags/plans/team-a/accounts.csv",
    "dags/other/accounts.csv",
    "accounts.csv",
    "docker/connections.json",
    "connections.json",
    "plugins/connections.json",
    ".env",
    "docker/.env",
    ".env.production",
]


@pytest.mark.parametrize(
    ("patterns", "path", "ignored"),
    [  # Docker's documented examples and patternmatcher's rules
        ("*/temp*", "somedir/temporary.txt", True),
        ("*/temp*", "temp", False),
        ("*/temp*", "a/b/temp", False),
        ("*/*/temp*", "somedir/subdir/temporary.txt", True),
        ("temp?", "tempa", True),
        ("temp?", "temp/x", False),
        ("**/*.go", "main.go", True),
        ("**/*.go", "a/b/main.go", True),
        ("*.go", "a/main.go", False),
        ("*.md\n!README.md", "README.md", False),
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
        ("*.md\nREADME-secret.md\n!README*.md", "README-secret.md", False),
        ("dags/plans", "dags/plans/a/b.csv", True),
        ("/dags/plans/", "dags/plans/x", True),
        ("dags/plans\n!dags/plans/keep.yaml", "dags/plans/keep.yaml", False),
        ("**/connections.json", "connections.json", True),
        ("**/connections.json", "a/b/connections.json", True),
        ("dags/**", "dags/x/y", True),
        ("# comment\n\n  dags/x  ", "dags/x", True),
        ("a/../b", "b", True),
        ("[a-c].txt", "b.txt", True),
        ("[a-c].txt", "d.txt", False),
        ("\\*.txt", "*.txt", True),
        ("\\*.txt", "a.txt", False),
    ],
)
def test_the_dockerignore_reader_follows_docker(patterns, path, ignored):
    from harness.dockerignore import ignored as docker_ignores
    from harness.dockerignore import read_patterns

    assert docker_ignores(path, read_patterns(patterns)) is ignored


def test_no_plan_csv_or_connections_file_enters_the_build_context_or_the_image():
    """The build context as Docker computes it from .dockerignore (this checkout's files plus
    the secret files an operator adds) holds no CSV, no plan, no connections file and no .env;
    and the Dockerfile copies no plan: plans come from the mounted volume."""
    from harness.dockerignore import build_context

    assert not list(ROOT.glob("Dockerfile.dockerignore"))  # .dockerignore is the one in force
    context = build_context(ROOT, SECRET_FILES)
    leaks = sorted(p for p in context if p.endswith((".csv", "connections.json"))
                   or p.startswith("dags/plans/") or p.rpartition("/")[2].startswith(".env"))  # fmt: skip
    assert not leaks, leaks
    assert {"Dockerfile", "requirements.txt", "dags/migrations.py", "docker/init.sh"} <= context
    copied = set()
    for sources in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", DOCKERFILE, re.M):
        for source in sources.split():
            source = source.rstrip("/")
            copied |= {p for p in context if p == source or p.startswith(f"{source}/")}
    assert "dags/migrations.py" in copied and "plugins/mailmigrate_airflow/ui/app.py" in copied
    assert not [p for p in copied if p.startswith("dags/") and p != "dags/migrations.py"]
    assert not [p for p in copied if p.startswith("docker/") and "example" in p]
