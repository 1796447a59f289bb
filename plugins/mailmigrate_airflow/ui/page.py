"""The status page's HTML, rendered from :func:`mailmigrate_airflow.ui.status.migration_status`
with the autoescaping Jinja template ``ui/templates/status.html.j2``."""

from __future__ import annotations

import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from markupsafe import Markup

from mailmigrate.results import human_bytes
from mailmigrate_airflow.runs import URL_PREFIX

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


def when(value: str | None, zone: str = "UTC") -> Markup:
    """An ISO moment as ``2026-03-02 19:00 CET`` in the plan's zone, UTC in the tooltip."""
    if not value:
        return Markup("–")
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return Markup.escape(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    utc = moment.astimezone(dt.UTC)
    try:
        local = moment.astimezone(ZoneInfo(zone))
    except (ZoneInfoNotFoundError, ValueError):
        local = utc
    return Markup('<time datetime="{}" title="{}">{}</time>').format(
        utc.isoformat(), f"{utc:%Y-%m-%d %H:%M} UTC", f"{local:%Y-%m-%d %H:%M %Z}"
    )


def epoch(value: float | None) -> str | None:
    """Epoch seconds as an ISO moment, for :func:`when`."""
    return None if value is None else dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


def listing_url(status: dict[str, Any], prefix: str, **changes: Any) -> str:
    """The page's own URL with the run, filter, search and page, some of them changed."""
    listing = status.get("listing") or {}
    params = {
        "run_id": (status.get("run") or {}).get("run_id"),
        "state": listing.get("state"),
        "q": listing.get("q"),
        "page": listing.get("page"),
        **changes,
    }
    query = urlencode({k: v for k, v in params.items() if v not in (None, "", 1)})
    return f"{prefix}/migrations/{quote(status['dag_id'], safe='')}" + (
        f"?{query}" if query else ""
    )


def here(url: str, root: str) -> str:
    """A root-relative URL (``/dags/...``) under the API server's root path; others unchanged."""
    return f"{root}{url}" if url.startswith("/") else url


@cache
def _environment() -> Any:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(size=size, count=count, duration=duration, when=when, here=here, epoch=epoch)
    env.globals["listing_url"] = listing_url
    env.globals["step_letters"] = STEP_LETTERS
    return env


def render_page(migrations: list[dict], chosen: dict | None, root: str = "") -> str:
    """The page: every migration, and the chosen one's status if any.

    :param root: the API server's root path ("" unless Airflow runs under a sub-path); the
        page's own links start with ``root`` + ``/mailmigrate``, the UI's with ``root``.
    """
    template = _environment().get_template("status.html.j2")
    return template.render(
        migrations=migrations, status=chosen, prefix=f"{root}{URL_PREFIX}", root=root
    )
