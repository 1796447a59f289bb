"""The real Airflow components for end-to-end tests, driven through the REST API.

:class:`AirflowStack` runs Airflow 3 as separate OS processes in a temporary ``AIRFLOW_HOME``:
either ``airflow standalone`` (SQLite, LocalExecutor: api-server, scheduler, dag-processor and
triggerer in one process tree) or the components one by one, as production runs them
(``db migrate``, ``api-server``, ``scheduler``, ``dag-processor``, ``triggerer`` and any number
of ``celery worker``s, on a PostgreSQL metadata database and a Redis broker).

Every port is a free loopback port (API, worker and triggerer log servers), so a stack never
meets a developer's demo or another test run. Authentication is real: the simple auth manager
with an ``admin`` and a ``viewer`` user whose passwords the harness writes, and
:class:`AirflowApi` logs in with ``POST /auth/token`` and sends the JWT as a bearer token.

Each process logs to ``<root>/logs/<component>.log``; :meth:`AirflowStack.log_tails` collects
the ends of them for failure messages.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from harness.dovecot import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
AIRFLOW = str(VENV_BIN / "airflow")
WORKER_NAME_ENV = "MAILMIGRATE_TEST_WORKER_NAME"
USERS = {"admin": "admin", "viewer": "viewer"}  # user name -> simple auth manager role
TERMINAL_RUN_STATES = {"success", "failed"}


API_LOGS = ("standalone", "api-server")  # where an api-server answer of 500 is explained


class StackError(AssertionError):
    """The stack did not start or did not get where a test waited for; includes the log tails."""


def worker_hostname() -> str:
    """``[core] hostname_callable`` of a test worker: its name from the environment.

    Two Celery workers on one machine share the host name; in production each is a container
    with its own. Naming them lets a test see, in every task instance's ``hostname``, which
    worker ran it.
    """
    return os.environ[WORKER_NAME_ENV]


class AirflowApi:
    """A logged-in client of Airflow's public REST API (``/api/v2``).

    :param base_url: the api-server, ``http://127.0.0.1:PORT``.
    :param username: a simple auth manager user (``POST /auth/token`` trades the password for a
        JWT, sent with every request).
    """

    def __init__(self, base_url: str, username: str, password: str,
                 server_log: Callable[[], str] | None = None) -> None:  # fmt: skip
        self.base_url = base_url
        self.username = username
        self._server_log = server_log  # what the api-server logged, for a 5xx answer
        self._client = httpx.Client(base_url=base_url, timeout=30)
        response = self._client.post(
            "/auth/token", json={"username": username, "password": password}
        )
        if response.status_code != 201:
            raise StackError(f"login of {username} failed: {response.status_code} {response.text}")
        token = response.json()["access_token"]
        self._client.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, expect: int | Sequence[int] = 200, **kwargs: Any):
        """Send a request to ``/api/v2`` + ``path``; fail with the answer unless ``expect``.

        :return: the decoded JSON body (None when empty).
        """
        try:
            response = self._client.request(method, f"/api/v2{path}", **kwargs)
        except httpx.TimeoutException as exc:
            logged = f"\n{self._server_log()}" if self._server_log is not None else ""
            raise StackError(
                f"{method} {path} as {self.username}: no answer ({exc}){logged}"
            ) from None
        expected = (expect,) if isinstance(expect, int) else tuple(expect)
        if response.status_code not in expected:
            logged = ""
            if response.status_code >= 500 and self._server_log is not None:
                logged = f"\n{self._server_log()}"
            raise StackError(
                f"{method} {path} as {self.username}: {response.status_code} "
                f"{response.text[:2000]}{logged}"
            )
        return response.json() if response.content else None

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def create_connection(self, conn_id: str, connection: dict[str, Any]) -> None:
        """Create a connection from its JSON form (as in ``AIRFLOW_CONN_<ID>``)."""
        body = {"connection_id": conn_id, **connection}
        body["extra"] = json.dumps(connection.get("extra") or {})
        self.request("POST", "/connections", json=body, expect=201)

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict[str, Any]]:
        """The run's task instances by step key: an account's instance of a mapped step as
        ``<account group id>.<step>`` (``operators.step_key``), any other by its task id. Each
        carries its ``task_id`` and ``map_index``."""
        from mailmigrate_airflow.runs import SELECT_TASKS, account_maps, step_key

        found: list[dict[str, Any]] = []
        while True:  # pages of 1,000 (the API's most)
            answer = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances",
                              params={"limit": 1000, "offset": len(found)})  # fmt: skip
            found += answer["task_instances"]
            if not answer["task_instances"] or len(found) >= answer["total_entries"]:
                break
        selects = {}
        for task_id in SELECT_TASKS.values():
            if any(ti["task_id"] == task_id and ti["state"] == "success" for ti in found):
                selects[task_id] = self.xcom(dag_id, run_id, task_id)
        maps = account_maps(selects)
        return {step_key(ti["task_id"], ti["map_index"], maps): ti for ti in found}

    def _where(self, dag_id: str, run_id: str, key: str) -> tuple[str, dict[str, Any]]:
        """The task id and query parameters (``map_index``) of the instance named ``key``."""
        ti = self.task_instances(dag_id, run_id).get(key)
        if ti is None or ti["map_index"] < 0:
            return key, {}
        return ti["task_id"], {"map_index": ti["map_index"]}

    def xcom(self, dag_id: str, run_id: str, key: str, xcom_key: str = "return_value") -> Any:
        """A task instance's XCom (``key``: a task id, or a step key, see task_instances)."""
        task_id, params = (key, {}) if "." not in key else self._where(dag_id, run_id, key)
        entry = self.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{xcom_key}",
            params=params,
        )
        value = entry["value"]
        return json.loads(value) if isinstance(value, str) and value[:1] in "{[" else value

    def task_log(self, dag_id: str, run_id: str, key: str, try_number: int = 1) -> str:
        """One try's log as text (``key``: a task id, or a step key, see task_instances): the
        events of the structured log, one line each."""
        task_id, params = self._where(dag_id, run_id, key)
        answer = self.get(
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true", **params},
            headers={"Accept": "application/json"},
        )
        lines = []
        for entry in answer["content"]:
            if not isinstance(entry, dict):
                lines.append(str(entry))
                continue
            lines.append(str(entry.get("event", "")))
            if entry.get("error_detail"):  # an exception's type, text and frames
                lines.append(json.dumps(entry["error_detail"], default=str))
        return "\n".join(lines)

    def close(self) -> None:
        self._client.close()


class AirflowStack:
    """Airflow 3 components in their own processes, in a temporary home under ``root``.

    :param root: a directory for the home, the logs and the metadata DB (SQLite by default).
    :param plans_dir: ``MAILMIGRATE_PLANS_DIR`` of every component (the DAGs come from the
        repo's ``dags/migrations.py``).
    :param state_dir: ``MAILMIGRATE_STATE_DIR``: shared by all workers.
    :param database_url: SQLAlchemy URL of the metadata DB; SQLite in ``root`` when None.
    :param broker_url: the Celery broker; with it the executor is CeleryExecutor.
    """

    def __init__(
        self,
        root: Path,
        *,
        plans_dir: Path,
        state_dir: Path,
        database_url: str | None = None,
        broker_url: str | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.home = self.root / "home"
        self.logs = self.root / "logs"
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.passwords = {user: secrets.token_urlsafe(12) for user in USERS}
        passwords_file = self.home / "simple_auth_manager_passwords.json"
        passwords_file.write_text(json.dumps(self.passwords))
        passwords_file.chmod(0o600)
        self.executor = "CeleryExecutor" if broker_url else "LocalExecutor"
        self.database_path = self.home / "airflow.db"  # when SQLite
        # SQLite waits 5 s for a lock by default; on 2 busy cores the scheduler can hold one
        # longer, and the API server then answers a trigger with 500 "Database error".
        self.database_url = database_url or f"sqlite:///{self.database_path}?timeout=60"
        self.env = _clean_environment()
        self.env.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__MAX_MAP_LENGTH": "50000",  # as docker-compose.yaml ships it
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                "AIRFLOW__CORE__EXECUTOR": self.executor,
                "AIRFLOW__CORE__FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                    f"{user}:{role}" for user, role in USERS.items()
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords_file),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
                "MAILMIGRATE_PLANS_DIR": str(plans_dir),
                "MAILMIGRATE_STATE_DIR": str(state_dir),
            }
        )
        if broker_url:
            self.env["AIRFLOW__CELERY__BROKER_URL"] = broker_url
            self.env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + self.database_url.replace(
                "postgresql+psycopg2://", "postgresql://"
            )
            self.env["AIRFLOW__CELERY__WORKER_CONCURRENCY"] = "1"
            # As in docker-compose.yaml: with Redis, a busy worker would otherwise reserve the
            # next task and hold it until its running copy ends, while another worker idles.
            self.env["AIRFLOW__CELERY__EXTRA_CELERY_CONFIG"] = '{"worker_disable_prefetch": true}'

        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._apis: dict[str, AirflowApi] = {}

    # -- processes -----------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], extra_env: dict[str, str] | None = None) -> None:
        env = {**self.env, **(extra_env or {})}
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [AIRFLOW, *argv],
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_standalone(self, timeout: float = 300) -> None:
        """``airflow standalone``: migrates the DB and starts the four components."""
        self._spawn("standalone", ["standalone"])
        self.wait_until_healthy(timeout)

    def start_components(self, workers: Sequence[str] = (), timeout: float = 300) -> None:
        """``airflow db migrate``, then api-server, scheduler, dag-processor, triggerer and one
        ``celery worker`` per name in ``workers`` (its ``--celery-hostname`` and host name)."""
        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=600
        )
        (self.logs / "db-migrate.log").write_text(migrate.stdout + migrate.stderr)
        if migrate.returncode != 0:
            raise StackError(
                f"airflow db migrate failed:\n{_tail(migrate.stdout + migrate.stderr)}"
            )
        for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
            self._spawn(component, [component])
        for name in workers:
            self._spawn(
                f"worker-{name}",
                ["celery", "worker", "--celery-hostname", f"{name}@%h", "--concurrency", "1"],
                {
                    WORKER_NAME_ENV: name,
                    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "harness.airflow_stack.worker_hostname",
                    "PYTHONPATH": str(REPO_ROOT / "tests"),
                    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                },
            )
        self.wait_until_healthy(timeout)
        for name in workers:
            self.wait_for(
                lambda name=name: "ready." in self.log_text(f"worker-{name}"),
                timeout,
                f"celery worker {name} to be ready",
            )

    def check_processes(self) -> None:
        """Fail at once, with its log, when a component has exited."""
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise StackError(
                    f"airflow {name} exited with {process.returncode}:\n{self.log_tails([name])}"
                )

    def stop(self) -> None:
        """SIGTERM every component's process group, then SIGKILL what is left of it."""
        for api in self._apis.values():
            api.close()
        for process in self.processes.values():
            if process.poll() is None:
                _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process.pid, signal.SIGKILL)  # children outliving their parent
            process.poll()

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for(
        self, condition: Callable[[], Any], timeout: float, what: str, interval: float = 1.0
    ) -> Any:
        """Poll ``condition`` until it returns something truthy; return that.

        Fails after ``timeout`` seconds, or as soon as a component has exited, with the log
        tails of every component.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.check_processes()
            result = condition()
            if result:
                return result
            if time.monotonic() > deadline:
                raise StackError(f"timed out after {timeout:.0f} s waiting for {what}\n"
                                 + self.log_tails())  # fmt: skip
            time.sleep(interval)

    def health(self) -> dict[str, Any] | None:
        try:
            response = httpx.get(f"{self.base_url}/api/v2/monitor/health", timeout=5)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def wait_until_healthy(self, timeout: float) -> None:
        """Until the API answers and reports the DB, scheduler, triggerer and dag-processor
        healthy."""

        def healthy() -> bool:
            health = self.health()
            if not health:
                return False
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            return all((health.get(part) or {}).get("status") == "healthy" for part in parts)

        self.wait_for(healthy, timeout, "every Airflow component to report healthy", 2)

    def api(self, user: str = "admin") -> AirflowApi:
        """A REST client logged in as ``user`` (``admin`` or ``viewer``)."""
        if user not in self._apis:
            self._apis[user] = AirflowApi(
                self.base_url, user, self.passwords[user],
                lambda: self.log_tails([n for n in self.processes if n in API_LOGS], lines=80),
            )  # fmt: skip
        return self._apis[user]

    def wait_for_dag(self, dag_id: str, timeout: float = 180) -> dict[str, Any]:
        """Until the dag-processor has parsed and stored ``dag_id``; fails early on import errors."""
        api = self.api()

        def parsed() -> dict[str, Any] | None:
            errors = api.get("/importErrors")["import_errors"]
            if errors:
                raise StackError(f"import errors while waiting for {dag_id}: {errors}")
            answer = api.request("GET", f"/dags/{dag_id}", expect=(200, 404))
            return answer if answer and "dag_id" in answer else None

        return self.wait_for(parsed, timeout, f"the dag-processor to parse {dag_id}", 2)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float) -> dict[str, Any]:
        """Until the run is finished (success or failed); returns the run."""
        api = self.api()

        def finished() -> dict[str, Any] | None:
            run = api.get(f"/dags/{dag_id}/dagRuns/{run_id}")
            return run if run["state"] in TERMINAL_RUN_STATES else None

        try:
            return self.wait_for(finished, timeout, f"run {run_id} of {dag_id} to finish", 2)
        except StackError as exc:
            states = {t: ti["state"] for t, ti in api.task_instances(dag_id, run_id).items()}
            raise StackError(f"task states: {states}\n{exc}") from None

    # -- logs ------------------------------------------------------------------------------------

    def log_text(self, name: str) -> str:
        try:
            return (self.logs / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def scheduler_lines(self, marker: str) -> list[str]:
        """Lines of the scheduler's log (``airflow standalone``'s when it runs) with ``marker``."""
        name = "scheduler" if "scheduler" in self.processes else "standalone"
        return [line for line in self.log_text(name).splitlines() if marker in line]

    def log_tails(self, names: Sequence[str] | None = None, lines: int = 30) -> str:
        """The last ``lines`` of every component's log (or of ``names``), for failure messages."""
        parts = []
        for name in names or sorted(self.processes):
            parts.append(f"--- {self.logs / name}.log (last {lines} lines) ---")
            parts.append(_tail(self.log_text(name), lines))
        return "\n".join(parts)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _clean_environment() -> dict[str, str]:
    """This process's environment without Airflow or mailmigrate settings (the test session's
    own isolated Airflow must not leak in), with the venv's bin first on PATH: Airflow starts
    its components and task processes as ``airflow ...`` from PATH."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "MAILMIGRATE_", "PYTEST_"))
    }
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}"
    return env


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
