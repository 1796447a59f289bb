"""The migration status page: a FastAPI app on Airflow's API server, shown in the UI's navigation.

``plugins/mailmigrate_ui.py`` registers :data:`status_app` under :data:`mailmigrate_airflow.runs.URL_PREFIX` and an
external view pointing at it. The app is built on its first request (:class:`LazyApp`): every
Airflow process loads the plugins folder, and only the API server needs FastAPI and the models.
"""

from __future__ import annotations

from typing import Any


class LazyApp:
    """An ASGI app that builds the real one (:func:`mailmigrate_airflow.ui.app.create_app`)
    on its first call."""

    def __init__(self) -> None:
        self._app: Any = None

    @property
    def app(self) -> Any:
        if self._app is None:
            from mailmigrate_airflow.ui.app import create_app

            self._app = create_app()
        return self._app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the app keeps no state between requests
            return
        await self.app(scope, receive, send)


status_app = LazyApp()
