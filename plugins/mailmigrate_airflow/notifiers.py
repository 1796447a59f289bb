"""The cutover announcement and the plan's notifiers.

``cutover_ready`` says, once every initial copy is done, that the MX record can be changed now.
It always logs that; with a ``notify`` list in the plan it also sends it through Airflow
notifiers (any :class:`airflow.sdk.BaseNotifier`, e.g. the SMTP or Slack provider's)::

    notify:
      - notifier: airflow.providers.smtp.notifications.smtp.SmtpNotifier
        args:
          to: ops@example.com
          subject: "{{ cutover.subject }}"
          html_content: "<pre>{{ cutover.message }}</pre>"

The args are templated with the task's context plus ``cutover`` (the dict of
:func:`cutover_announcement`). Secrets belong in the notifier's connection, not in the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

if TYPE_CHECKING:
    from airflow.sdk import Context

    from mailmigrate.plan import Plan


def cutover_announcement(plan: Plan, domains: Iterable[str]) -> dict[str, Any]:
    """What cutover_ready says: ``subject``, ``message`` and the facts behind them.

    :param domains: the accounts' MX domains.
    """
    domain_list = sorted(set(domains))
    count = len(plan.accounts)
    subject = f"{plan.name}: all {count} initial copies done, change the MX record now"
    lines = [subject + "."]
    if plan.mx:
        expect = ", ".join(plan.mx.expect)
        lines.append(f"Point the MX records of {', '.join(domain_list)} to {expect}.")
        lines.append("wait_for_mx watches DNS; the delta copies follow in the delta window.")
    else:
        lines.append(f"Change the MX records of {', '.join(domain_list)} to the new servers.")
        lines.append("The plan has no mx section: the delta copies do not wait for DNS.")
    return {
        "plan": plan.name,
        "accounts": count,
        "domains": domain_list,
        "mx_expect": list(plan.mx.expect) if plan.mx else [],
        "subject": subject,
        "message": "\n".join(lines),
    }


def notify_cutover(
    plan: Plan, context: Context, cutover: dict[str, Any], log: logging.Logger | Any
) -> None:
    """Send the announcement through every notifier of the plan's ``notify`` list.

    Each entry is a :class:`~mailmigrate.plan.NotifierSpec`: ``notifier``, the import path of a
    BaseNotifier subclass, and ``args``, its keyword arguments. A notifier that cannot be set up
    fails the task, naming the plan line of its entry.
    """
    from airflow.sdk import BaseNotifier
    from airflow.sdk.module_loading import import_string

    for spec in plan.notify:
        where = f"{plan.path}:{spec.line}: notify: {spec.notifier}"
        try:
            notifier = import_string(spec.notifier)(**spec.args)
        except Exception as exc:
            raise AirflowFailException(f"{where}: cannot set it up: {exc}") from exc
        if not isinstance(notifier, BaseNotifier):
            raise AirflowFailException(f"{where}: is not an Airflow notifier (BaseNotifier)")
        log.info("Notifying through %s", spec.notifier)
        notifier({**context, "cutover": cutover})
