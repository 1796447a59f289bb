"""A real Airflow notifier for the tests: each notification appends its rendered ``line`` to a
file, so a test reads what a plan's ``notify`` entry sent (``harness.notifiers.LineFile``)."""

from __future__ import annotations

from airflow.sdk import BaseNotifier


class LineFile(BaseNotifier):
    """Appends its rendered ``line`` and a newline to the file ``path``."""

    template_fields = ("line",)

    def __init__(self, path: str, line: str) -> None:
        super().__init__()
        self.path, self.line = path, line

    def notify(self, context: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(self.line + "\n")
