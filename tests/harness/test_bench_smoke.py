"""The benchmark harness in quick mode, as a smoke test: it runs end to end against real Dovecot
servers and mbsync, writes its results, and the engine's copies are exact.

No timing assertions: the figures are for the report (bench/README.md), not for pass/fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not Path("/usr/bin/mbsync").exists(), reason="mbsync (isync) not installed")
def test_quick_benchmark_produces_results_and_an_exact_engine_copy(tmp_path):
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MAILMIGRATE_"))}
    process = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert process.returncode == 0, process.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "quick"
    assert results["corpus"]["messages"] > 0
    (round_,) = results["rounds"]
    for tool in ("engine", "mbsync"):
        runs = round_["runs"][tool]
        assert set(runs) == {"initial", "unchanged", "changed"}
        assert all(run["exit_code"] == 0 for run in runs.values()), runs
        figures = round_["figures"][tool]
        assert figures["initial_messages_per_second"] > 0
        assert figures["initial_peak_rss_mb"] > 0
    # The engine copied every message of the corpus, exactly (bytes, flags, dates), and the
    # deltas kept it exact after 1% new messages and 1% flag changes.
    assert round_["runs"]["engine"]["initial"]["copied"] == results["corpus"]["messages"]
    assert round_["runs"]["engine"]["unchanged"]["copied"] == 0
    assert round_["runs"]["engine"]["changed"]["copied"] == round_["change"]["new_messages"]
    assert round_["exact"]["engine"] is True, round_["differences"]["engine"]
    assert results["summary"]["engine"]["all_exact"] is True

    scale = results["scale"]
    assert scale["sequential_failures"] == 0
    assert scale["variants"] and all(v["ok"] for v in scale["variants"])
    assert results["memory"]["engine"]["exit_code"] == 0
    assert results["memory"]["engine"]["copied"] == results["memory"]["messages"]
    # The links section: both tools over shaped links (one with COMPRESS offered), the engine's
    # copies exact, the limit and the delta's round trips beside the figures.
    rows = results["links"]["links"]
    assert {row["link"] for row in rows} >= {"loopback", "10 ms, 20 Mbit/s, COMPRESS"}
    for row in rows:
        assert row["engine"]["ok"] and row["engine"]["exact"] is True, row["link"]
        assert row["mbsync"]["ok"], row["link"]
        assert row["engine"]["unchanged_source_flights"] > 0
    assert any(row["limit_seconds"] for row in rows)
    assert {row["target"] for row in results["targets"]}

    # The plan scale section (quick: the parse of a 2,000-account plan): one mapped group.
    parsed = results["plan_scale"]["parse"]["2000"]
    assert parsed["import_errors"] == {} and parsed["tasks"] == 7, parsed

    markdown = (out / "results.md").read_text()
    assert "| initial copy, msg/s |" in markdown
    assert "| one plan of 2,000 accounts: parse, serialize, JSON |" in markdown
    png = (out / "throughput.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" in png[-12:]
    shutil.rmtree(out, ignore_errors=True)
