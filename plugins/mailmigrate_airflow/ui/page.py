"""The status page's HTML, rendered from :func:`mailmigrate_airflow.ui.status.migration_status`
with the autoescaping Jinja template ``ui/templates/status.html.j2``."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

from mailmigrate.results import human_bytes

TEMPLATES = Path(__file__).resolve().parent / "templates"
STEP_LETTERS = {"test": "T", "initial_copy": "I", "wait_for_mx": "M",
                "wait_for_delta_window": "W", "delta_copy": "D"}  # fmt: skip


def size(value: int | None) -> str:
    return "–" if value is None else human_bytes(value)


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def when(value: str | None) -> str:
    if not value:
        return "–"
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC)
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def here(url: str, root: str) -> str:
    """A root-relative URL (``/dags/...``) under the API server's root path; others unchanged."""
    return f"{root}{url}" if url.startswith("/") else url


@cache
def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(size=size, count=count, duration=duration, when=when, here=here)
    env.globals["step_letters"] = STEP_LETTERS
    return env


def render_page(migrations: list[dict], chosen: dict | None, root: str = "") -> str:
    """The page: every migration, and the chosen one's status if any.

    :param root: the API server's root path ("" unless Airflow runs under a sub-path); the
        page's own links start with ``root`` + ``/mailmigrate``, the UI's with ``root``.
    """
    from mailmigrate_airflow.ui import URL_PREFIX

    template = _environment().get_template("status.html.j2")
    return template.render(
        migrations=migrations, status=chosen, prefix=f"{root}{URL_PREFIX}", root=root
    )
