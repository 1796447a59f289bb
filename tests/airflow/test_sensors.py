"""The Airflow layer of the waits: the MX trigger against real dnsmasq servers, and the sensors."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import json
import threading
from datetime import timedelta

import pendulum
import pytest
from airflow.providers.standard.triggers.temporal import DateTimeTrigger
from airflow.sdk.exceptions import TaskDeferred

from mailmigrate_airflow.sensors import DeltaWindowSensor, MxPropagationSensor
from mailmigrate_airflow.triggers import MxPropagationTrigger

DOMAIN = "example.test"
OLD = ["mx1.old.test", "mx2.old.test"]
NEW = ["mx1.new.test", "mx2.new.test"]
CLASSPATH = "mailmigrate_airflow.triggers.MxPropagationTrigger"


def _import(classpath: str) -> type:
    module, _, name = classpath.rpartition(".")
    return getattr(importlib.import_module(module), name)


# -- MxPropagationTrigger -------------------------------------------------------------------------


def test_trigger_serialize_round_trips() -> None:
    trigger = MxPropagationTrigger(
        domain=DOMAIN,
        expect=NEW,
        resolvers=["127.0.0.1:5353", "[::1]:53"],
        authoritative=["127.0.0.2"],
        poke_interval=30,
        tracker_state={"changed_at": 1.5, "old_ttl": 300, "new_ttl": 60, "checks": 2},
        ns_port=5353,
        query_timeout=2,
    )
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs == {
        "domain": DOMAIN,
        "expect": NEW,
        "resolvers": ["127.0.0.1:5353", "[::1]:53"],
        "authoritative": ["127.0.0.2"],
        "poke_interval": 30.0,
        "tracker_state": {"changed_at": 1.5, "old_ttl": 300, "new_ttl": 60, "checks": 2},
        "ns_port": 5353,
        "query_timeout": 2.0,
    }
    rebuilt = _import(classpath)(**json.loads(json.dumps(kwargs)))
    assert rebuilt.serialize() == (classpath, kwargs)


def test_trigger_fires_only_after_every_server_flipped(dns_servers, capsys) -> None:
    auth, *resolvers = dns_servers(3)
    for server in (auth, *resolvers):
        server.set_mx(DOMAIN, OLD, ttl=1)
    trigger = MxPropagationTrigger(
        domain=DOMAIN,
        expect=NEW,
        resolvers=[r.address for r in resolvers],
        authoritative=[auth.address],
        poke_interval=0.2,
        query_timeout=1,
    )

    async def scenario() -> dict:
        async def first_event():
            async for event in trigger.run():
                return event.payload
            raise AssertionError("the trigger ended without an event")

        waiting = asyncio.create_task(first_event())
        for server in (auth, *resolvers):
            # Several checks run while this server (and any after it) still answers the old set.
            await asyncio.sleep(0.6)
            assert not waiting.done(), f"fired before {server.address} flipped"
            await asyncio.to_thread(server.set_mx, DOMAIN, NEW, 1)
        return await asyncio.wait_for(waiting, timeout=60)

    payload = asyncio.run(scenario())

    assert payload["status"] == "propagated"
    assert payload["domain"] == DOMAIN and payload["mx"] == NEW
    assert payload["waited_ttl"] == 1  # the old record's TTL
    assert payload["checks"] > 3
    assert payload["answers"] == [
        f"authoritative {auth.address}: mx1.new.test, mx2.new.test (ttl 1)",
        *(f"resolver {r.address}: mx1.new.test, mx2.new.test (ttl 1)" for r in resolvers),
    ]
    # Every server's answer is logged at the first check and when an answer changes, the
    # expected hosts named; a check that changes nothing is one line.
    logged = "".join(capsys.readouterr())  # Airflow's structlog writes the trigger's log there
    assert f"resolver {resolvers[1].address}: mx1.old.test, mx2.old.test (ttl 1)" in logged
    assert f"authoritative {auth.address}: mx1.new.test, mx2.new.test (ttl 1)" in logged
    listings = logged.count("expecting mx1.new.test, mx2.new.test: answers")
    assert 1 <= listings <= len(resolvers) + 1  # the first check, then one per flip at most
    quiet = logged.count("no change, still waiting for mx1.new.test, mx2.new.test")
    assert quiet >= payload["checks"] - listings - 1, logged
    assert "has propagated (check" in logged
    assert trigger.tracker_state is not None and trigger.tracker_state["old_ttl"] == 1


# -- MxPropagationSensor --------------------------------------------------------------------------


def _mx_sensor(resolver, auth, **settings) -> MxPropagationSensor:
    """``wait_for_mx`` for DOMAIN expecting NEW, asking ``resolver`` and ``auth``."""
    return MxPropagationSensor(task_id="wait_for_mx", domain=DOMAIN, expect=NEW,
                               resolvers=[resolver.address], authoritative=[auth.address],
                               **settings)  # fmt: skip


def test_mx_sensor_defers_with_the_old_ttl_seeded(dns_servers) -> None:
    auth, resolver = dns_servers(2)
    for server in (auth, resolver):
        server.set_mx(DOMAIN, OLD, ttl=300)
    sensor = _mx_sensor(resolver, auth, poke_interval=timedelta(minutes=10), timeout=3600)
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    assert deferred.value.method_name == "execute_complete"
    assert deferred.value.timeout == timedelta(seconds=3600)
    trigger = deferred.value.trigger
    assert isinstance(trigger, MxPropagationTrigger)
    classpath, kwargs = trigger.serialize()
    assert classpath == CLASSPATH
    assert kwargs["domain"] == DOMAIN and kwargs["expect"] == NEW
    assert kwargs["resolvers"] == [resolver.address]
    assert kwargs["authoritative"] == [auth.address]
    assert kwargs["poke_interval"] == 600.0
    assert kwargs["tracker_state"]["old_ttl"] == 300
    assert kwargs["tracker_state"]["changed_at"] is None

    event = {"status": "propagated", "domain": DOMAIN, "mx": NEW, "checks": 7, "answers": []}
    result = sensor.execute_complete(context={}, event=event)
    assert result["domain"] == DOMAIN and result["mx"] == NEW and result["checks"] == 7
    json.dumps(result)  # small and XCom-safe


def test_mx_sensor_returns_at_once_when_already_propagated(dns_servers) -> None:
    auth, resolver = dns_servers(2)
    for server in (auth, resolver):
        server.set_mx(DOMAIN, NEW, ttl=0)  # nothing to wait for: no cache may hold anything
    sensor = _mx_sensor(resolver, auth)
    result = sensor.execute(context={})
    assert result is not None and result["mx"] == NEW and result["checks"] == 1


def test_mx_sensor_rejects_an_unexpected_event() -> None:
    sensor = MxPropagationSensor(task_id="wait_for_mx", domain=DOMAIN, expect="mx.new.test")
    assert sensor.expect == ["mx.new.test"]
    with pytest.raises(Exception, match="without propagation"):
        sensor.execute_complete(context={}, event={"status": "error"})


# -- DeltaWindowSensor ----------------------------------------------------------------------------


def _hhmm(moment: pendulum.DateTime) -> str:
    return f"{moment:%H:%M}"


def test_window_sensor_returns_at_once_inside_the_window() -> None:
    now = pendulum.now("UTC")
    sensor = DeltaWindowSensor(
        task_id="wait_for_delta_window",
        timezone="UTC",
        window=f"{_hhmm(now.subtract(hours=1))}-{_hhmm(now.add(hours=1))}",
    )
    assert sensor.execute(context={}) is None
    assert sensor.execute_complete(context={}, event=now) is None


def test_window_sensor_defers_until_the_window_opens() -> None:
    opens = pendulum.now("UTC").add(hours=2).replace(second=0, microsecond=0)
    sensor = DeltaWindowSensor(
        task_id="wait_for_delta_window",
        timezone="UTC",
        window=(opens.time(), opens.add(hours=1).time()),
    )
    assert sensor.window == f"{_hhmm(opens)}-{_hhmm(opens.add(hours=1))}"
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    trigger = deferred.value.trigger
    assert isinstance(trigger, DateTimeTrigger)
    assert trigger.moment == opens
    assert deferred.value.method_name == "execute_complete"
    # Resumed while the window is still closed (a clock or a triggerer off): it waits again.
    with pytest.raises(TaskDeferred) as again:
        sensor.execute_complete(context={}, event=opens)
    assert again.value.trigger.moment == opens


def test_window_sensor_waits_for_the_next_allowed_weekday() -> None:
    zone = "Europe/Berlin"

    def tomorrow_midnight() -> tuple[int, pendulum.DateTime]:
        today = pendulum.now(zone)
        return today.weekday(), today.add(days=1).start_of("day")

    weekday, expected = tomorrow_midnight()
    others = [day for day in range(7) if day != weekday]
    sensor = DeltaWindowSensor(
        task_id="wait_for_delta_window", timezone=zone, window=None, weekdays=others
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context={})
    moments = {expected.in_timezone("UTC"), tomorrow_midnight()[1].in_timezone("UTC")}
    assert deferred.value.trigger.moment in moments  # both differ only across midnight


def test_window_sensor_rejects_bad_input_when_the_dag_is_parsed() -> None:
    with pytest.raises(ValueError, match="window"):
        DeltaWindowSensor(task_id="w", window="7pm-6am")
    with pytest.raises(ValueError, match="weekday"):
        DeltaWindowSensor(task_id="w", weekdays=["someday"])
    with pytest.raises(Exception, match="Mars"):
        DeltaWindowSensor(task_id="w", timezone="Mars/Olympus_Mons")


def test_window_sensor_accepts_plan_weekday_names() -> None:
    sensor = DeltaWindowSensor(task_id="w", window="19:00-06:00", weekdays=["mon", "fri"])
    assert sensor.weekdays == [0, 4]
    assert sensor.delta_window.window == (dt.time(19), dt.time(6))


# -- through Airflow: dag.test() defers, runs the trigger in-process and resumes ------------------


def test_dag_test_waits_for_the_mx_change_then_runs_on(dns_servers, airflow_db) -> None:
    from airflow.sdk import DAG, task
    from airflow.utils.state import DagRunState, TaskInstanceState
    from harness.airflow_env import run_dag_test

    auth, resolver = dns_servers(2)
    for server in (auth, resolver):
        server.set_mx(DOMAIN, OLD, ttl=1)
    flipper = threading.Timer(2.0, lambda: [s.set_mx(DOMAIN, NEW, 1) for s in (auth, resolver)])

    with DAG("mx_sensor_dag_test", schedule=None, start_date=pendulum.datetime(2025, 1, 1)) as dag:
        wait = _mx_sensor(resolver, auth, poke_interval=0.3, timeout=120)
        window = DeltaWindowSensor(task_id="wait_for_delta_window", window=None)

        @task
        def after(summary: dict) -> str:
            return ",".join(summary["mx"])

        wait >> window
        window >> after(wait.output)

    flipper.start()
    try:
        run = run_dag_test(dag)
    finally:
        flipper.cancel()
    assert run.state == DagRunState.SUCCESS
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert states == {
        "wait_for_mx": TaskInstanceState.SUCCESS,
        "wait_for_delta_window": TaskInstanceState.SUCCESS,
        "after": TaskInstanceState.SUCCESS,
    }
    (after_ti,) = [ti for ti in run.get_task_instances() if ti.task_id == "after"]
    assert after_ti.xcom_pull(task_ids="after") == "mx1.new.test,mx2.new.test"
    summary = after_ti.xcom_pull(task_ids="wait_for_mx")
    assert summary["checks"] >= 2  # the worker's first check, then the trigger's (deferred)
