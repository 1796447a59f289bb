"""What the status page says in the middle of a large migration: the cutover banner, one MX state
per domain with what the DNS servers answer now, the state filter, search and paging, the next
delta in words, and times in the plan's zone.

The DAG is the real serialized DAG of a 122-account plan; the run is a snapshot of task states
(the moment after every initial copy, some sensors deferred, one released, one copy failed),
given to :func:`~mailmigrate_airflow.ui.status.migration_status` as the page would load it. The
DNS servers are real dnsmasq servers: the old MX is still served for one domain.
"""

from __future__ import annotations

import datetime as dt
import html
from types import SimpleNamespace

import pytest
from harness.airflow_env import register_dag

from mailmigrate.plan import load_plan
from mailmigrate_airflow.factory import build_dag
from mailmigrate_airflow.ui import domains
from mailmigrate_airflow.ui.loading import load_run
from mailmigrate_airflow.ui.page import render_page
from mailmigrate_airflow.ui.status import migration_status
from mailmigrate_airflow.ui.totals import select_rows

NOW = dt.datetime(2026, 3, 2, 17, 30, tzinfo=dt.UTC)
READY_AT = dt.datetime(2026, 3, 2, 17, 5, tzinfo=dt.UTC)  # 18:05 in Berlin (CET)
ONE = [f"u{n:03d}@one.example" for n in range(120)]
TWO = ["a@two.example", "b@two.example"]


def _group(user: str) -> str:
    return user.replace("@", "_").replace(".", "_")


def _ti(dag_id: str, task_id: str, state: str | None, end: dt.datetime | None = None):
    return SimpleNamespace(dag_id=dag_id, run_id="manual__1", task_id=task_id, state=state,
                           try_number=1, start_date=end, end_date=end, trigger_id=None)  # fmt: skip


@pytest.fixture
def snapshot(airflow_db, tmp_path, dns_servers):
    """A migration after its initial copies: one.example still has the old MX in DNS and all its
    sensors wait (u005's copy failed, u006's still runs); two.example has the new MX, one of its
    two sensors released already."""
    auth, resolver = dns_servers(2)
    for server in (auth, resolver):
        server.set_mx("one.example", ["mx.old.example"])
        server.set_mx("two.example", ["mx.new.example"])
    plans = tmp_path / "plans"
    plans.mkdir()
    rows = ["source_user,source_password,destination_user,destination_password"]
    rows += [f"{u},,{u.replace('@', '.new@')}," for u in ONE + TWO]
    (plans / "accounts.csv").write_text("\n".join(rows) + "\n")
    (plans / "big.yaml").write_text(
        "name: views_big\nsource: {connection: x}\ndestination: {connection: y}\n"
        "accounts: accounts.csv\n"
        f"mx: {{expect: [mx.new.example], resolvers: ['{resolver.address}'], "
        f"authoritative: ['{auth.address}']}}\n"
        "delta: {timezone: Europe/Berlin, window: any}\n"
    )
    (tmp_path / "dag.py").write_text("# the DAG of big.yaml, built by the test\n")
    register_dag(build_dag(load_plan(plans / "big.yaml"), "big.yaml", str(tmp_path / "dag.py")))
    from airflow.utils.session import create_session

    with create_session() as session:
        data = load_run(session, "migration_views_big")
    dag_id = data.dag.dag_id
    data.run = SimpleNamespace(run_id="manual__1", state="running", run_after=READY_AT,
                               start_date=READY_AT, end_date=None, conf={})  # fmt: skip
    tis = {"cutover_ready": _ti(dag_id, "cutover_ready", "success", READY_AT)}
    for user in ONE + TWO:
        group = _group(user)
        states = ["success", "success", "deferred", None, None]
        if user == ONE[5]:
            states = ["success", "failed", "upstream_failed", "upstream_failed", "upstream_failed"]
        elif user == ONE[6]:
            states = ["success", "running", None, None, None]
        elif user == TWO[0]:
            states = ["success", "success", "success", "success", "running"]
        steps = ("test", "initial_copy", "wait_for_mx", "wait_for_delta_window", "delta_copy")
        for step, state in zip(steps, states, strict=True):
            tis[f"{group}.{step}"] = _ti(dag_id, f"{group}.{step}", state, READY_AT)
    data.tis = tis  # by step key, <account group>.<step>, as load_run keys mapped instances
    data.mapped = {"account": [
        {"source_user": u, "domain": u.partition("@")[2], "destination_user": u.replace("@", ".new@")}
        for u in ONE + TWO]}  # the accounts task's XCom: every account in the run  # fmt: skip
    data.xcoms[(f"{_group(TWO[0])}.wait_for_mx", "return_value")] = {
        "domain": "two.example", "mx": ["mx.new.example"], "checks": 3,
        "propagated_at": "2026-03-02T17:20:00+00:00",
    }  # fmt: skip
    domains._cache.clear()
    return data


def _page(status: dict, state=None, q=None, page=1, root="") -> str:
    listed = select_rows(status, state, q, page) if "listing" not in status else status
    return html.unescape(render_page([], {**listed, "runs": []}, root))


def test_one_mx_state_per_domain_with_what_each_server_answers_now(snapshot):
    status = migration_status(snapshot, NOW)
    one, two = status["domains"]
    # one.example: every sensor waits, the servers still answer the old host.
    assert (one["domain"], one["accounts"], one["state"]) == ("one.example", 120, "waiting")
    assert one["expect"] == ["mx.new.example"]
    answers = {(s["role"], tuple(s["hosts"]), s["expected"]) for s in one["seen"]["servers"]}
    assert answers == {("authoritative", ("mx.old.example",), False),
                       ("resolver", ("mx.old.example",), False)}  # fmt: skip
    # two.example: one sensor released, one still deferred: one state, "propagated".
    assert (two["domain"], two["state"], two["mx"]) == ("two.example", "propagated", ["mx.new.example"])  # fmt: skip
    assert two["propagated_at"] == "2026-03-02T17:20:00+00:00" and two["seen"] is None
    # The banner names the domain still to change and the hosts to point it to.
    assert status["cutover"]["kind"] == "change_mx"
    assert [d["domain"] for d in status["cutover"]["domains"]] == ["one.example"]

    page = _page(status)
    assert "Change the MX of one.example to mx.new.example now." in page
    assert "two.example to" not in page and "mixed" not in page
    assert "authoritative" in page and "mx.old.example</span> (not yet the new hosts)" in page
    # Times in the plan's zone, UTC on hover.
    assert '<time datetime="2026-03-02T17:05:00+00:00" title="2026-03-02 17:05 UTC">2026-03-02 18:05 CET</time>' in page  # fmt: skip


def test_totals_count_initial_copies_and_the_filter_states(snapshot):
    status = migration_status(snapshot, NOW)
    totals = status["totals"]
    assert (totals["selected"], totals["initial_done"], totals["done"], totals["failed"]) == (122, 120, 0, 1)  # fmt: skip
    assert totals["states"] == {"failed": 1, "running": 2, "waiting_mx": 119, "waiting_window": 0,
                                "done": 0, "other": 0}  # fmt: skip
    rows = {row["account"]: row for row in status["accounts"]}
    # Inside an "any" window the next delta is "as soon as the MX has propagated", not a time.
    assert rows[ONE[0]]["next_delta"] == {"at": None, "note": "once the MX change has propagated (the window is open)"}  # fmt: skip
    assert rows[TWO[0]]["next_delta"] is None  # its delta copy runs now
    page = _page(status)
    assert '<div class="v">120 / 122</div><div class="l">initial copies done</div>' in page
    assert (
        '<div class="v">0 / 122</div><div class="l">accounts migrated (delta copied)</div>' in page
    )


def test_filter_search_and_pages(snapshot):
    def listed(state=None, q=None, page=1):
        return select_rows(migration_status(snapshot, NOW), state, q, page)

    first = listed()
    everyone = [r["account"] for r in migration_status(snapshot, NOW)["accounts"]]
    assert sorted(everyone) == sorted(ONE + TWO)
    assert [r["account"] for r in first["accounts"]] == everyone[:50]
    assert first["listing"] | {"filters": None} == {"state": None, "q": "", "page": 1, "pages": 3, "per_page": 50, "matching": 122, "first": 1, "filters": None}  # fmt: skip
    assert first["totals"]["accounts"] == 122  # the totals stay those of every account
    last = listed(page=3)
    assert [r["account"] for r in last["accounts"]] == everyone[100:]
    assert listed(page=99)["listing"]["page"] == 3
    assert [r["account"] for r in listed("failed")["accounts"]] == [ONE[5]]
    assert sorted(r["account"] for r in listed("running")["accounts"]) == [TWO[0], ONE[6]]
    assert len(listed("waiting_mx", page=3)["accounts"]) == 19
    assert [r["account"] for r in listed(None, "U01")["accounts"]] == ONE[10:20]
    assert [r["account"] for r in listed(None, "B.NEW@two")["accounts"]] == [TWO[1]]  # destination
    assert listed("done")["accounts"] == [] and listed("nonsense")["listing"]["state"] is None

    page = _page(listed("waiting_mx", "u0", 2), root="/air")
    assert "51–98 of 98" in page and 'rel="prev"' in page and 'rel="next"' not in page
    prev = '/air/mailmigrate/migrations/migration_views_big?run_id=manual__1&state=waiting_mx&q=u0"'
    assert f'href="{prev}' in page
    assert 'data-state="failed">failed: 1</a>' in page


def test_a_domain_check_that_cannot_run_says_why(snapshot):
    sensor = domains.sensor_of(snapshot.dag, {"tasks": "account", "domain": "one.example"})
    broken = SimpleNamespace(domain="one.example", expect=["mx.new.example"],
                             resolvers=["not-an-address"], authoritative=[])  # fmt: skip
    seen = domains.seen_now(broken)
    assert seen["servers"] == [] and "not an IP address" in seen["error"]
    assert domains.seen_now(sensor) is domains.seen_now(sensor)  # cached: a reload is no poke
