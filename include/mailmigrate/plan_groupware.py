"""The plan's ``kinds`` (what moves: ``mail``, ``calendars``, ``contacts``, ``tasks``) and its
``groupware`` section (which connections serve calendars, contacts and tasks on each side).

::

    kinds: [mail, calendars, contacts]
    groupware:
      source: {connection: acme_old_dav}
      destination: {connection: acme_new_dav}
      propagate_deletions: false

``kinds`` defaults to ``[mail]``. A plan naming a groupware kind needs the ``groupware``
section, and a ``groupware`` section needs a groupware kind; both are problems at their line.
"""

from __future__ import annotations

from collections.abc import Callable

from yaml.nodes import Node

from mailmigrate.plan_model import GROUPWARE_KEYS, KINDS, GroupwareOptions
from mailmigrate.plan_yaml import YamlReader, given, suggest

GROUPWARE_KINDS = ("calendars", "contacts", "tasks")
_EXAMPLE = "[mail, calendars, contacts]"


def read_kinds(reader: YamlReader, node: Node) -> tuple[str, ...] | None:
    """``kinds``: a non-empty list of distinct known kinds."""
    items = reader.texts(node, "kinds", _EXAMPLE)
    if items is None:
        return None
    kinds: list[str] = []
    ok = bool(items)
    if not items:
        reader.problem(node, f"kinds: must name at least one of {', '.join(KINDS)}")
    for item, kind in items:
        if kind not in KINDS:
            reader.problem(item, f'kinds: unknown kind "{kind}"{suggest(kind, KINDS)} '
                                 f"(known: {', '.join(KINDS)})")  # fmt: skip
            ok = False
        elif kind in kinds:
            reader.problem(item, f'kinds: "{kind}" given twice')
            ok = False
        else:
            kinds.append(kind)
    return tuple(kinds) if ok else None


ConnectionReader = Callable[[YamlReader, dict[str, Node], str, Node], "str | None"]


def read_groupware(reader: YamlReader, node: Node, connection: ConnectionReader
                   ) -> GroupwareOptions | None:  # fmt: skip
    """``groupware``: a DAV connection per side (read like the plan's own ``source`` and
    ``destination`` by ``connection``) and ``propagate_deletions``."""
    fields = reader.mapping(node, "groupware", GROUPWARE_KEYS,
                            " with source and destination connections")  # fmt: skip
    if fields is None:
        return None
    source = connection(reader, _prefixed(fields), "groupware.source", node)
    destination = connection(reader, _prefixed(fields), "groupware.destination", node)
    propagate = False
    if (value := given(fields, "propagate_deletions")) is not None:
        propagate = reader.boolean(value, "groupware.propagate_deletions")
        if propagate is None:
            return None
    if source is None or destination is None:
        return None
    return GroupwareOptions(source, destination, propagate)


def _prefixed(fields: dict[str, Node]) -> dict[str, Node]:
    return {f"groupware.{key}": value for key, value in fields.items()}


def check_kinds(reader: YamlReader, fields: dict[str, Node], kinds: tuple[str, ...] | None,
                groupware: GroupwareOptions | None) -> None:  # fmt: skip
    """A groupware kind needs the ``groupware`` section and the section needs such a kind."""
    if kinds is None:
        return
    wanted = [k for k in kinds if k in GROUPWARE_KINDS]
    section = given(fields, "groupware")
    if wanted and section is None:
        reader.problem(fields["kinds"], f"kinds: {', '.join(wanted)} need a groupware section "
                                        "naming the DAV connections, e.g. groupware: {source: "
                                        "{connection: acme_old_dav}, destination: "
                                        "{connection: acme_new_dav}}")  # fmt: skip
    elif section is not None and not wanted:
        reader.problem(section, "groupware: given, but kinds names none of "
                                f"{', '.join(GROUPWARE_KINDS)}; add them, e.g. kinds: {_EXAMPLE}")  # fmt: skip
