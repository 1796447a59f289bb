"""Figures the robustness suites collect while they run, printed at the end of the session.

Tests call :func:`record` with counts under a section (``record("connection faults",
drops=20)``); ``tests/conftest.py`` hands pytest's terminal reporter to :func:`write_summary`,
which prints every section and how many tests of those suites ran and failed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

_FIGURES: defaultdict[str, Counter[str]] = defaultdict(Counter)

SUITES = (
    "test_faults.py",
    "test_refusals.py",
    "test_tls.py",
    "test_bad_input.py",
    "test_bad_mail.py",
    "test_secrets.py",
)
"""The test modules whose outcomes the summary counts."""


def record(section: str, **counts: int) -> None:
    """Add ``counts`` to the figures of ``section``."""
    _FIGURES[section].update(counts)


def summary_lines(ran: int = 0, failed: list[str] | None = None) -> list[str]:
    """One line per section (``section: key value, ...``), then the suites' outcome."""
    lines = [
        f"{section}: " + ", ".join(f"{key.replace('_', ' ')} {n}" for key, n in counts.items())
        for section, counts in sorted(_FIGURES.items())
    ]
    if ran:
        lines.append(f"robustness tests: {ran} run, {len(failed or [])} failed")
        lines += [f"  FAILED {name}" for name in failed or []]
    return lines


def write_summary(reporter: Any) -> None:
    """Print the figures in pytest's terminal summary (``pytest_terminal_summary``)."""
    outcomes: dict[str, str] = {}
    for outcome in ("passed", "failed", "error"):
        for report in reporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if nodeid.split("::")[0].endswith(SUITES) and outcomes.get(nodeid) != "failed":
                outcomes[nodeid] = "passed" if outcome == "passed" else "failed"
    lines = summary_lines(len(outcomes), [n for n, o in outcomes.items() if o == "failed"])
    if lines:
        reporter.write_sep("-", "faults injected, inputs tried, secrets searched")
        for line in lines:
            reporter.write_line(line)
