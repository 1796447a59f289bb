"""Airflow plugin: the mailbox migration status page in the Airflow UI, and the timetable of
the scheduled after-hours deltas.

Registers the status page's app on the API server under ``/mailmigrate`` and a "Migrations"
entry in the UI's navigation that shows it. The app itself lives in ``mailmigrate_airflow.ui``
and is built on its first request, so the other Airflow processes that load plugins stay light.
Registers :class:`~mailmigrate_airflow.timetable.AfterHoursTimetable`: the scheduler and the
API server deserialize a DAG's custom timetable only from a plugin.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from mailmigrate_airflow.runs import URL_PREFIX
from mailmigrate_airflow.timetable import AfterHoursTimetable
from mailmigrate_airflow.ui import status_app


class MailmigratePlugin(AirflowPlugin):
    """The status page (a FastAPI app) and its navigation entry; the deltas' timetable."""

    name = "mailmigrate"
    timetables = [AfterHoursTimetable]
    fastapi_apps = [
        {"app": status_app, "url_prefix": URL_PREFIX, "name": "Mailbox migration status"},
    ]
    external_views = [
        {
            "name": "Migrations",
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "migrations",
            "nav_top_level": True,
        },
    ]
