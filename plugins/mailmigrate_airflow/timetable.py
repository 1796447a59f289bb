"""The timetable of the scheduled after-hours deltas: a run at every opening of the plan's delta
window, in the plan's time zone, and with ``delta.repeat`` again every so often while it stays
open (:mod:`mailmigrate.delta_schedule` computes the times; DST-correct).

Why not a ``CronTriggerTimetable``: the window's wall-clock rules (a start in the spring-forward
gap opens at the transition, one in the fall-back fold at the earlier instant, a window squeezed
away by the gap does not open) are those of the main DAG's window sensor and the status page
only if all three use :mod:`mailmigrate.window`; cron cannot express a repeat of seconds (the
tests' compressed time) or "every N hours, inside the window only".

Registered through the plugin (``plugins/mailmigrate_ui.py``), as Airflow requires of custom
timetables so that the scheduler can deserialize it.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction, Timetable
from pendulum import DateTime

from mailmigrate.delta_schedule import first_run, next_run
from mailmigrate.plan import DeltaWindow
from mailmigrate.quiet import duration_text
from mailmigrate.window import WEEKDAY_NAMES, parse_window


def _days(weekdays: tuple[int, ...]) -> str:
    """``(0, 1, 2, 3, 4)`` -> ``mon-fri``; ``(0, 2, 5, 6)`` -> ``mon,wed,sat-sun``."""
    if len(weekdays) == 7:
        return "every day"
    runs: list[list[int]] = []
    for day in weekdays:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(WEEKDAY_NAMES[r[0]] + (f"-{WEEKDAY_NAMES[r[-1]]}" if len(r) > 1 else "")
                    for r in runs)  # fmt: skip


def _utcnow() -> DateTime:
    """The scheduler's clock (tests replace it)."""
    return pendulum.now("UTC")


class AfterHoursTimetable(Timetable):
    """Runs at the openings of a delta window (and every ``repeat`` seconds inside it).

    Missed runs are never made up: after a pause, or a scheduler down for the night, the next
    run is now when a window is open, else at the next opening.

    :param timezone: the plan's time zone.
    :param window: ``"19:00-06:00"`` or ``None`` (any time: opens at local midnight).
    :param weekdays: the allowed days the windows open on, Monday = 0.
    :param repeat: seconds between runs inside an open window; ``None``: one run per window.
    """

    def __init__(
        self,
        timezone: str,
        window: str | None,
        weekdays: tuple[int, ...] | list[int],
        repeat: float | None = None,
    ) -> None:
        self.timezone = timezone
        self.window = window
        self.weekdays = tuple(sorted(weekdays))
        self.repeat = repeat
        self._window = DeltaWindow(timezone, parse_window(window), self.weekdays)

    @property
    def summary(self) -> str:  # type: ignore[override]
        repeat = f", every {duration_text(self.repeat)} inside it" if self.repeat else ""
        window = self.window or "any time"
        return f"after hours {window} {_days(self.weekdays)} ({self.timezone}){repeat}"

    @property
    def description(self) -> str:  # type: ignore[override]
        return "Delta passes at each opening of the delta window: " + self.summary

    def serialize(self) -> dict[str, Any]:
        return {"timezone": self.timezone, "window": self.window,
                "weekdays": list(self.weekdays), "repeat": self.repeat}  # fmt: skip

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> AfterHoursTimetable:
        return cls(data["timezone"], data["window"], data["weekdays"], data.get("repeat"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AfterHoursTimetable) and self.serialize() == other.serialize()

    def __hash__(self) -> int:
        return hash((self.timezone, self.window, self.weekdays, self.repeat))

    def infer_manual_data_interval(self, *, run_after: DateTime) -> DataInterval:
        return DataInterval.exact(run_after)

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        now = _utcnow()
        if last_automated_data_interval is None:
            start = now if restriction.earliest is None else max(now, restriction.earliest)
            run = first_run(start, self._window)
        else:
            run = next_run(last_automated_data_interval.end, self._window, self.repeat)
            if not restriction.catchup and run < now:
                run = first_run(now, self._window)
        if restriction.earliest is not None and run < restriction.earliest:
            run = first_run(restriction.earliest, self._window)
        if restriction.latest is not None and run > restriction.latest:
            return None
        return DagRunInfo.exact(run.in_timezone("UTC"))
