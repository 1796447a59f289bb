"""Which destination collection each source collection goes to.

Rules, in order: a collection copied by an earlier pass goes where it went; the source's default calendar goes to the destination's default calendar; every
other collection goes to the destination collection of the same kind and display name
(case-insensitive) that can hold its components; when that name is taken by a collection that
cannot (another kind, or a task list for events), or by an earlier source collection, the copy
gets a new collection named ``"<name> (2)"``, ``(3)``... and the mapping says it was renamed;
an existing ``"<name> (n)"`` that fits and is not taken is reused (a copy made by a pass whose
state was lost).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailmigrate.groupware.dav import Collection

KIND_COMPONENTS = {"calendars": {"VEVENT", "VJOURNAL"}, "tasks": {"VTODO"}, "contacts": {"VCARD"}}


@dataclass
class Mapped:
    """One source collection and where it goes: an existing destination collection, or a new
    one (``destination is None``) named ``name`` under ``path_name``."""

    source: Collection
    name: str
    destination: Collection | None = None
    path_name: str = ""
    renamed: bool = False

    def describe(self) -> str:
        target = "existing" if self.destination is not None else "new"
        note = f" (renamed: {self.source.name!r} is taken)" if self.renamed else ""
        default = "default " if self.source.default else ""
        return f"{default}{self.source.kind} {self.source.name!r} -> {target} {self.name!r}{note}"


def wanted(collection: Collection, kinds: set[str]) -> bool:
    """Whether ``collection`` holds anything of the selected kinds."""
    held = set(collection.components) if collection.kind == "calendar" else {"VCARD"}
    return any(held & KIND_COMPONENTS[kind] for kind in kinds)


def _fits(source: Collection, destination: Collection) -> bool:
    if source.kind != destination.kind:
        return False
    return source.kind != "calendar" or set(source.components) <= set(destination.components)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.").lower() or "collection"


def map_collections(sources: list[Collection], destinations: list[Collection], kinds: set[str],
                    known: dict[str, str] | None = None) -> list[Mapped]:  # fmt: skip
    """The mapping for every source collection of the selected ``kinds``. ``known`` (source href
    -> destination href, from the state) keeps an earlier pass's choice while that destination
    collection exists, so a renamed copy is not renamed again."""
    known = known or {}
    by_href = {d.href: d for d in destinations}
    taken_names = {d.name.casefold() for d in destinations}
    taken_paths = {d.path_name.casefold() for d in destinations}
    used: set[str] = set()
    result: list[Mapped] = []
    dest_default = next((d for d in destinations if d.default), None)
    for source in sorted(
        sources, key=lambda c: (c.href not in known, not c.default, c.kind, c.href)
    ):
        if not wanted(source, kinds):
            continue
        earlier = by_href.get(known.get(source.href, ""))
        if earlier is not None and earlier.href not in used:
            used.add(earlier.href)
            result.append(Mapped(source, earlier.name, earlier))
            continue
        if source.default and dest_default is not None and _fits(source, dest_default):
            used.add(dest_default.href)
            result.append(Mapped(source, dest_default.name, dest_default))
            continue
        same = next((d for d in destinations if d.name.casefold() == source.name.casefold()), None)
        if same is not None and same.href not in used and _fits(source, same):
            used.add(same.href)
            result.append(Mapped(source, same.name, same))
            continue
        name, number, earlier = source.name, 1, None
        while name.casefold() in taken_names:
            number += 1
            name = f"{source.name} ({number})"
            earlier = next((d for d in destinations if d.name.casefold() == name.casefold()
                            and d.href not in used and _fits(source, d)), None)  # fmt: skip
            if earlier is not None:  # the renamed copy of an earlier pass (its state lost)
                break
        if earlier is not None:
            used.add(earlier.href)
            result.append(Mapped(source, earlier.name, earlier, renamed=True))
            continue
        taken_names.add(name.casefold())
        path, number = _slug(source.path_name), 1
        while path.casefold() in taken_paths:
            number += 1
            path = f"{_slug(source.path_name)}-{number}"
        taken_paths.add(path.casefold())
        result.append(Mapped(source, name, None, path, renamed=name != source.name))
    return result
