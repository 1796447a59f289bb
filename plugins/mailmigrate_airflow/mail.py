"""Mail templates and sending: the owner mails and the ops mails of :mod:`.notifiers`.

Templates are Jinja files shipped in ``mailmigrate_airflow/templates`` (``*.subject.j2`` for
the subject line, ``*.html.j2`` for the body). A plan overrides any of them with a file of the
same name in its ``reports.templates`` folder, so ops edit the wording per migration without
touching the package. ``*.html.j2`` templates are autoescaped; templates run sandboxed.

Mail goes out through an Airflow SMTP connection (the smtp provider's
:class:`~airflow.providers.smtp.hooks.smtp.SmtpHook`: host, port, login, TLS settings and
``from_email`` are the connection's).
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

SHIPPED_TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def _environment(override: str | None) -> Any:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    loaders: list[jinja2.BaseLoader] = []
    if override:
        loaders.append(jinja2.FileSystemLoader(override))
    loaders.append(jinja2.FileSystemLoader(str(SHIPPED_TEMPLATES)))
    return SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_mail(
    names: Iterable[str], variables: Mapping[str, Any], templates: str | Path | None = None
) -> tuple[str, str]:
    """``(subject, html)`` from the first of ``names`` that has templates.

    :param names: template base names in order of preference, e.g. ``["ops_task_failed",
        "ops_event"]``; ``<name>.subject.j2`` and ``<name>.html.j2`` are rendered.
    :param templates: a folder whose templates win over the shipped ones (the plan's).
    """
    env = _environment(str(templates) if templates else None)
    names = list(names)
    subject = env.select_template([f"{n}.subject.j2" for n in names]).render(**variables)
    html = env.select_template([f"{n}.html.j2" for n in names]).render(**variables)
    return " ".join(subject.split()), html


def send_mail(
    *,
    conn_id: str,
    to: str | list[str],
    subject: str,
    html: str,
    sender: str | None = None,
    attachments: Mapping[str, str | bytes] | None = None,
) -> None:
    """Send one mail through the SMTP connection ``conn_id``.

    :param sender: the From address; default: the connection's ``from_email`` extra.
    :param attachments: file name -> content.
    """
    from airflow.providers.smtp.hooks.smtp import SmtpHook

    with tempfile.TemporaryDirectory(prefix="mailmigrate-mail-") as folder:
        files = []
        for name, content in (attachments or {}).items():
            path = Path(folder) / Path(name).name
            path.write_bytes(content.encode() if isinstance(content, str) else content)
            files.append(str(path))
        with SmtpHook(smtp_conn_id=conn_id) as hook:
            hook.send_email_smtp(
                to=to,
                subject=subject,
                html_content=html,
                from_email=sender or hook.from_email,
                files=files,
            )
