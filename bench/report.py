"""Figures from the measured runs: per round, median and spread, ratios against mbsync; written
as JSON, a short Markdown table and a PNG of the initial-copy throughput per round."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import links
from bench.png import bar_chart
from bench.rounds import Round

MB = 1024 * 1024


def spread(values: Sequence[float]) -> dict[str, float] | None:
    """Median, min, max and the values themselves (rounded), or ``None`` without values."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "values": [round(v, 3) for v in values],
    }


def round_figures(round_: Round, messages: int, size: int) -> dict[str, Any]:
    """The figures of one round, per tool, and the engine's ratios against mbsync."""
    figures: dict[str, Any] = {}
    for tool, runs in round_.runs.items():
        initial = runs.get("initial")
        if initial is None:
            continue
        ok = initial.exit_code == 0
        figures[tool] = {
            "ok": ok and all(r.exit_code == 0 for r in runs.values()),
            "initial_seconds": initial.seconds,
            "initial_messages_per_second": messages / initial.seconds if ok else None,
            "initial_mb_per_second": size / MB / initial.seconds if ok else None,
            "initial_peak_rss_mb": initial.peak_rss_mb,
            "initial_cpu_seconds": initial.cpu_seconds,
            "initial_server_cpu_seconds": initial.server_cpu_seconds,
            "initial_verify_seconds": initial.verify_seconds,
            "unchanged_seconds": runs["unchanged"].seconds if "unchanged" in runs else None,
            "unchanged_pass_seconds": runs["unchanged"].engine_seconds
            if "unchanged" in runs
            else None,
            "changed_seconds": runs["changed"].seconds if "changed" in runs else None,
            "changed_pass_seconds": runs["changed"].engine_seconds if "changed" in runs else None,
            "exact": round_.exact.get(tool),
        }
    engine, mbsync = figures.get("engine"), figures.get("mbsync")
    if engine and mbsync:
        figures["ratio"] = {
            # > 1: the engine is faster (throughput ratio = inverse time ratio)
            key: mbsync[f"{key}_seconds"] / engine[f"{key}_seconds"]
            for key in ("initial", "unchanged", "changed")
            if engine.get(f"{key}_seconds") and mbsync.get(f"{key}_seconds")
        }
        figures["ratio"]["initial_peak_rss"] = (
            engine["initial_peak_rss_mb"] / mbsync["initial_peak_rss_mb"]
            if mbsync["initial_peak_rss_mb"]
            else None
        )
    return figures


def summarize(per_round: list[dict[str, Any]]) -> dict[str, Any]:
    """Median and spread over the rounds of every per-tool figure and every ratio."""
    summary: dict[str, Any] = {}
    for tool in ("engine", "mbsync"):
        rows = [r[tool] for r in per_round if tool in r]
        keys = [k for k in (rows[0] if rows else {}) if k not in ("ok", "exact")]
        summary[tool] = {k: spread([row[k] for row in rows]) for k in keys}
        summary[tool]["all_ok"] = all(row["ok"] for row in rows)
        checked = [row["exact"] for row in rows if row["exact"] is not None]
        summary[tool]["all_exact"] = all(checked) if checked else None
    ratios = [r["ratio"] for r in per_round if "ratio" in r]
    keys = list(ratios[0]) if ratios else []
    summary["ratio"] = {k: spread([r.get(k) for r in ratios]) for k in keys}
    return summary


def targets(summary: dict[str, Any], scale: dict | None, memory: dict | None) -> list[dict]:
    """The issue's four targets against the medians of this run."""

    def median(*path: str) -> float | None:
        node: Any = summary
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        return node["median"] if isinstance(node, dict) and "median" in node else None

    rows = [
        {
            "target": "initial copy >= 2x mbsync msg/s",
            "value": median("ratio", "initial"),
            "goal": 2.0,
            "higher_is_better": True,
        },
        {
            "target": "unchanged delta < 0.3 s (engine pass)",
            "value": median("engine", "unchanged_pass_seconds"),
            "goal": 0.3,
            "higher_is_better": False,
            "note": f"process wall incl. interpreter start: {median('engine', 'unchanged_seconds')} s",
        },
    ]
    if memory:
        rows.append(
            {
                "target": f"peak RSS < 150 MB with a {memory['large_message_mb']:.0f} MB message",
                "value": memory["engine"]["peak_rss_mb"],
                "goal": 150.0,
                "higher_is_better": False,
            }
        )
    if scale:
        for variant in scale.get("variants", []):
            rows.append(
                {
                    "target": f"{scale['accounts']} accounts in parallel >= 1.5x one at a time "
                    f"({variant['name']} vs {variant.get('baseline')})",
                    "value": variant.get("speedup"),
                    "goal": 1.5,
                    "higher_is_better": True,
                }
            )
    for row in rows:
        value = row["value"]
        if value is None:
            row["met"] = None
        else:
            row["met"] = value >= row["goal"] if row["higher_is_better"] else value < row["goal"]
    return rows


def _fmt(stat: dict | None, digits: int = 2, unit: str = "") -> str:
    if not stat:
        return "n/a"
    return f"{stat['median']:.{digits}f}{unit} ({stat['min']:.{digits}f}–{stat['max']:.{digits}f})"


def markdown(results: dict[str, Any]) -> str:
    """The short table: medians with (min–max) over the rounds."""
    summary, corpus = results["summary"], results["corpus"]
    engine, mbsync, ratio = summary["engine"], summary["mbsync"], summary["ratio"]
    machine = results["machine"]
    load = " -> ".join(
        str(machine[k][0]) for k in ("load_average_at_start", "load_average_at_end") if k in machine
    )
    lines = [
        f"Corpus: {corpus['messages']} messages, {corpus['megabytes']:.0f} MB in "
        f"{corpus['folders']} folders (largest {corpus['largest_kb']:.0f} KB); "
        f"{results['rounds_count']} rounds; {results['machine']['cpus']} CPUs; "
        f"mail stores on {results['store']}; load average {load}. Median (min–max) over rounds.",
        "",
        "| figure | mailmigrate | mbsync | ratio (engine vs mbsync) |",
        "|---|---|---|---|",
        f"| initial copy, msg/s | {_fmt(engine['initial_messages_per_second'], 0)} | "
        f"{_fmt(mbsync['initial_messages_per_second'], 0)} | {_fmt(ratio.get('initial'), 2, 'x')} |",
        f"| initial copy, MB/s | {_fmt(engine['initial_mb_per_second'], 1)} | "
        f"{_fmt(mbsync['initial_mb_per_second'], 1)} | |",
        f"| initial copy, wall s | {_fmt(engine['initial_seconds'])} | "
        f"{_fmt(mbsync['initial_seconds'])} | |",
        f"| initial copy, peak RSS MB | {_fmt(engine['initial_peak_rss_mb'], 0)} | "
        f"{_fmt(mbsync['initial_peak_rss_mb'], 0)} | |",
        f"| initial copy, client CPU s | {_fmt(engine['initial_cpu_seconds'])} | "
        f"{_fmt(mbsync['initial_cpu_seconds'])} | |",
        f"| initial copy, server CPU s | {_fmt(engine['initial_server_cpu_seconds'])} | "
        f"{_fmt(mbsync['initial_server_cpu_seconds'])} | |",
        f"| initial copy, of which verification s | {_fmt(engine['initial_verify_seconds'])} | | |",
        f"| delta, unchanged, wall s | {_fmt(engine['unchanged_seconds'])} | "
        f"{_fmt(mbsync['unchanged_seconds'])} | {_fmt(ratio.get('unchanged'), 2, 'x')} |",
        f"| delta, unchanged, engine pass s | {_fmt(engine['unchanged_pass_seconds'])} | | |",
        f"| delta, 1% new + 1% flags, wall s | {_fmt(engine['changed_seconds'])} | "
        f"{_fmt(mbsync['changed_seconds'])} | {_fmt(ratio.get('changed'), 2, 'x')} |",
        f"| copy exact (bytes, flags, dates) | {_yes(engine['all_exact'])} | "
        f"{_yes(mbsync['all_exact'])} | |",
    ]
    notes = [
        note
        for round_ in results.get("rounds", [])[:1]
        for tool, problems in round_.get("differences", {}).items()
        for note in problems[-1:]
        if problems
    ]
    if notes:
        lines += ["", "Copy differences (round 1): " + "; ".join(notes) + "."]
    scale, memory = results.get("scale"), results.get("memory")
    if scale:
        lines += ["", f"Scale: {scale['accounts']} accounts x {scale['messages_per_account']} "
                  f"messages; one at a time (sum of single-account processes) "
                  f"{scale['sequential_seconds']:.1f} s, {scale['sequential_cpu_seconds']:.1f} "
                  "CPU s in the engine processes."]  # fmt: skip
        lines += ["", "| in parallel | wall s | engine CPU s | one at a time | wall s | speed-up |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for variant in scale["variants"]:
            speedup = variant.get("speedup")
            cpu = variant.get("cpu_seconds")
            baseline = variant.get("baseline_seconds")
            lines.append(
                f"| {variant['name']} | {variant.get('seconds') or float('nan'):.1f} | "
                + (f"{cpu:.1f} | " if cpu is not None else "n/a | ")
                + f"{variant.get('baseline', '')} | "
                + (f"{baseline:.1f} | " if baseline else "n/a | ")
                + (f"{speedup:.2f}x |" if speedup else f"n/a ({variant.get('error', '')}) |")
            )
            if variant.get("sequential_cli_speedup"):
                lines.append(
                    f"| {variant['name']} | {variant['seconds']:.1f} | n/a | sum of single-account"
                    f" processes | {scale['sequential_seconds']:.1f} |"
                    f" {variant['sequential_cli_speedup']:.2f}x |"
                )
    if memory:
        lines += [
            "",
            f"Memory: {memory['messages']} messages incl. one of {memory['large_message_mb']:.0f} MB; "
            f"peak RSS engine {memory['engine']['peak_rss_mb']:.0f} MB, "
            f"mbsync {memory['mbsync']['peak_rss_mb']:.0f} MB.",
        ]
    if results.get("links"):
        lines += ["", links.markdown(results["links"]).rstrip("\n")]
    if results.get("plan_scale"):
        from bench.plan_scale import markdown as plan_scale_markdown

        lines += ["", plan_scale_markdown(results["plan_scale"]).rstrip("\n")]
    lines += ["", "| target | measured | goal | met |", "|---|---|---|---|"]
    for row in results["targets"]:
        value = "n/a" if row["value"] is None else f"{row['value']:.2f}"
        lines.append(
            f"| {row['target']} | {value} | {'>=' if row['higher_is_better'] else '<'} "
            f"{row['goal']} | {_yes(row['met'])} |"
        )
    return "\n".join(lines) + "\n"


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("yes" if value else "**no**")


def write_results(out: Path, results: dict[str, Any], per_round: list[dict[str, Any]]) -> None:
    """``results.json``, ``results.md`` and ``throughput.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out / "results.md").write_text(markdown(results))
    groups = [f"round {i + 1}" for i in range(len(per_round))]
    series = {
        tool: [r.get(tool, {}).get("initial_messages_per_second") or 0.0 for r in per_round]
        for tool in ("engine", "mbsync")
    }
    bar_chart(out / "throughput.png", "initial copy, messages per second", groups, series, "msg/s")
