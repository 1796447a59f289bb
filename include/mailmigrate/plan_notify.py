"""The plan's ``notify`` list: the Airflow notifiers that tell ops about the migration's events,
each as a :class:`NotifierSpec` (an import path, keyword arguments kept as plain YAML data, and
``on``: the events it is sent for, ``cutover_ready`` by default). The engine has no Airflow, so a
notifier is checked for the form of its path only; :mod:`mailmigrate_airflow.notifiers` imports
and calls it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import Node, ScalarNode, SequenceNode

from mailmigrate.plan_model import NOTIFY_EVENTS, NOTIFY_KEYS, NotifierSpec
from mailmigrate.plan_yaml import YamlReader, given, node_line, suggest

_DOTTED_PATH = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
_SMTP_NOTIFIER = "airflow.providers.smtp.notifications.smtp.SmtpNotifier"


def read_notify(reader: YamlReader, node: Node) -> tuple[NotifierSpec, ...] | None:
    """The ``notify`` list. A notifier's import path is checked for its form only: the engine has
    no Airflow to import it from; the cutover task imports it."""
    if not isinstance(node, SequenceNode):
        reader.problem(
            node,
            f"notify: must be a list, e.g. [{{notifier: {_SMTP_NOTIFIER}, "
            "args: {to: ops@example.com}}]",
        )
        return None
    specs = [_notifier(reader, item) for item in node.value]
    return tuple(spec for spec in specs if spec) if all(specs) else None


def _notifier(reader: YamlReader, node: Node) -> NotifierSpec | None:
    """One entry: ``{notifier: module.Class, args: {...}}``."""
    fields = reader.mapping(node, "notify", NOTIFY_KEYS, " with notifier and optional args")
    if fields is None:
        return None
    example = f", e.g. {_SMTP_NOTIFIER}"
    path = None
    if "notifier" not in fields:
        reader.problem(node, f"notify.notifier: missing; name an Airflow notifier class{example}")
    else:
        path = reader.text(fields["notifier"], "notify.notifier", example)
        if path is not None and not _DOTTED_PATH.match(path):
            reader.problem(
                fields["notifier"],
                f'notify.notifier: "{path}" is not the import path of a class (module.Class)'
                f"{example}",
            )
            path = None
    args: dict[str, Any] | None = {}
    if (args_node := given(fields, "args")) is not None:
        args = _notifier_args(reader, args_node)
    on: tuple[str, ...] | None = ("cutover_ready",)
    if (on_node := given(fields, "on")) is not None:
        on = _events(reader, on_node)
    if path is None or args is None or on is None:
        return None
    return NotifierSpec(notifier=path, args=args, line=node_line(node), on=on)


def _events(reader: YamlReader, node: Node) -> tuple[str, ...] | None:
    """``on``: the events a notifier is sent for, a list of :data:`NOTIFY_EVENTS`."""
    example = f"[{', '.join(NOTIFY_EVENTS)}]"
    if isinstance(node, ScalarNode):  # on: finished
        text = reader.text(node, "notify.on", f", e.g. {example}")
        items = None if text is None else [(node, text)]
    else:
        items = reader.texts(node, "notify.on", example)
    if items is None:
        return None
    events: list[str] = []
    ok = bool(items)
    if not items:
        reader.problem(node, f"notify.on: must name at least one event of {example}")
    for item, text in items:
        if text not in NOTIFY_EVENTS:
            reader.problem(
                item,
                f'notify.on: "{text}" is not an event{suggest(text, NOTIFY_EVENTS)} '
                f"(use {', '.join(NOTIFY_EVENTS)})",
            )
            ok = False
        elif text not in events:
            events.append(text)
    return tuple(events) if ok else None


def _notifier_args(reader: YamlReader, node: Node) -> dict[str, Any] | None:
    """A notifier's keyword arguments as plain YAML data (text, numbers, lists, mappings)."""
    example = ", e.g. args: {to: ops@example.com}"
    fields = reader.mapping(node, "notify.args", None, f" of the notifier's arguments{example}")
    if fields is None:
        return None
    args: dict[str, Any] = {}
    ok = True
    for key, value_node in fields.items():
        try:
            # A constructor per value: a failed construction leaves state behind in it.
            args[key] = SafeConstructor().construct_object(value_node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            mark = getattr(exc, "problem_mark", None)
            reason = getattr(exc, "problem", None) or exc
            reader.problem(
                mark.line + 1 if mark else value_node,
                f"notify.args.{key}: cannot be read: {reason}",
            )
            ok = False
    return args if ok else None
