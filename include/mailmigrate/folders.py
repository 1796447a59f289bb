"""Folder mapping: which destination folder each source folder is copied to.

Paths are the adapters' separator-free tuples (see :mod:`mailmigrate.mailbox.base`), so namespaces
and separators are already gone; what is left to decide here:

- special-use folders go to the destination's folder of the same use (RFC 6154 attribute first,
  then a well-known name in one of several languages); when the destination has none, the source's
  name is created with ``CREATE-SPECIAL-USE``;
- a name component the destination cannot hold is renamed deterministically, with a reason;
- plan rules exclude folders (with their children) and rename folders (with their children);
- no two source folders ever share a destination folder: a later claimant gets `` (2)``, `` (3)``...

A label-based source (Gmail, see :mod:`mailmigrate.labels`) passes its views, which are not mapped
at all, its ``\\All`` folder, which maps onto the destination's archive folder (``\\Archive``,
else "Archive") and copies only what :mod:`mailmigrate.labels` selects, and the container of its
system folders (``[Gmail]``), whose folders map as if at the top level; containers left empty by
that are not created.

Who keeps a contested destination path, best first: INBOX and paths kept from an earlier pass, the
source folder of a special use mapped onto the destination's folder of that use, a folder under its
own name, a plan-rule target, a renamed (fitted) name; ties go to the smaller source path.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from mailmigrate.errors import FolderMappingError
from mailmigrate.mailbox.base import SPECIAL_USES, Folder
from mailmigrate.plan import FolderRules

if TYPE_CHECKING:
    from mailmigrate.labels import LabelLayout

Path = tuple[str, ...]
INBOX = "INBOX"
INBOX_PATH: Path = (INBOX,)

MAPPED_USES = ("\\Sent", "\\Trash", "\\Drafts", "\\Junk", "\\Archive")
"""Uses mapped onto the destination's folder of the same use. ``\\All`` and ``\\Flagged`` are
virtual views of other folders: reported, but copied like ordinary folders (or excluded by a rule)."""


def _names(*groups: str) -> tuple[str, ...]:
    return tuple(name.strip() for group in groups for name in group.split("|"))


WELL_KNOWN_NAMES: dict[str, tuple[str, ...]] = {
    "\\Sent": _names(
        "Sent|Sent Items|Sent Messages|Sent Mail|Sent Email|Sent E-mail",
        "Gesendet|Gesendete Objekte|Gesendete Elemente|Gesendete Nachrichten",
        "Envoyés|Éléments envoyés|Messages envoyés|Enviados|Elementos enviados",
        "Itens enviados|Mensagens enviadas|Posta inviata|Inviata|Inviati|Elementi inviati",
        "Verzonden|Verzonden items|Verzonden berichten|Skickat|Skickade|Skickade objekt",
        "Sendt|Sendte elementer|Sendt post|Wysłane|Elementy wysłane|Lähetetyt",
        "Lähetetyt kohteet|Odeslané|Odeslaná pošta|Отправленные",
    ),
    "\\Trash": _names(
        "Trash|Deleted|Deleted Items|Deleted Messages|Bin",
        "Papierkorb|Gelöschte Objekte|Gelöschte Elemente|Gelöscht",
        "Corbeille|Éléments supprimés|Papelera|Elementos eliminados|Elementos borrados",
        "Lixo|Lixeira|Itens excluídos|Cestino|Posta eliminata|Elementi eliminati",
        "Prullenbak|Verwijderde items|Verwijderde berichten|Papperskorgen|Borttaget",
        "Borttagna objekt|Papirkurv|Slettet|Slettede elementer|Kosz|Elementy usunięte",
        "Roskakori|Poistetut|Koš|Odstraněná pošta|Корзина|Удаленные",
    ),
    "\\Drafts": _names(
        "Drafts|Draft|Entwürfe|Brouillons|Borradores|Rascunhos|Bozze|Concepten|Utkast",
        "Kladder|Kladde|Wersje robocze|Luonnokset|Koncepty|Черновики",
    ),
    "\\Junk": _names(
        "Junk|Junk E-mail|Junk Email|Junk Mail|Spam|Bulk Mail",
        "Junk-E-Mail|Spam-Verdacht|Unerwünscht|Courrier indésirable|Indésirables|Pourriel",
        "Correo no deseado|Lixo eletrônico|Posta indesiderata|Ongewenste e-mail|Skräppost",
        "Uønsket e-post|Uønsket post|Wiadomości-śmieci|Roskaposti|Nevyžádaná pošta|Спам",
    ),
    "\\Archive": _names(
        "Archive|Archives|Archiv|Archivo|Archivio|Archief|Arkiv|Archiwum|Arkisto|Arquivo|Архив"
    ),
}


def _fold(name: str) -> str:
    """A name for case-insensitive comparison (NFC first: clients differ in composing accents)."""
    return unicodedata.normalize("NFC", name).casefold()


_USE_OF_NAME = {_fold(n): use for use, names in WELL_KNOWN_NAMES.items() for n in names}
_CANONICAL_USE = {_fold(use): use for use in SPECIAL_USES}


@dataclass(frozen=True)
class FolderMapping:
    """Where one source folder goes.

    :param source: the folder as the source listed it (a hierarchy level the source did not list
        appears as a synthesized, unsubscribed, non-selectable container).
    :param destination: the destination path.
    :param special_use: the use this folder serves in the mapping (attribute or guessed name);
        ``None`` for a folder that lost its use to another source folder or is moved by a rule.
    :param create_special_use: the attribute to request when the destination folder must be
        created (RFC 6154 ``CREATE-SPECIAL-USE``), else ``None``.
    :param renamed: why the destination path differs from the source path, ``None`` if it does not.
    """

    source: Folder
    destination: Path
    special_use: str | None = None
    create_special_use: str | None = None
    renamed: str | None = None


@dataclass
class FolderPlan:
    """Every mapped folder (ordered by destination path: parents before children), the folders
    the plan excludes, and the plan rules that matched no source folder (for warnings).

    On a label-based source also the views left out, the source path whose mapping copies only
    the archived messages, and the layout (:class:`mailmigrate.labels.LabelLayout`)."""

    mappings: list[FolderMapping]
    excluded: list[Folder] = field(default_factory=list)
    unmatched_rules: list[str] = field(default_factory=list)
    views: list[Folder] = field(default_factory=list)
    archive_source: Path | None = None
    label_layout: LabelLayout | None = None

    def renames(self) -> list[FolderMapping]:
        """The mappings whose destination path differs from the source path."""
        return [m for m in self.mappings if m.renamed]

    def destinations(self) -> dict[Path, Path]:
        """Source path -> destination path; pass it as ``previous`` to later passes."""
        return {_normalized(m.source.path): m.destination for m in self.mappings}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary for reports (paths as lists of components)."""
        return {
            "mappings": [
                {
                    "source": list(m.source.path),
                    "source_name": m.source.name,
                    "destination": list(m.destination),
                    "special_use": m.special_use,
                    "create_special_use": m.create_special_use,
                    "renamed": m.renamed,
                    "subscribed": m.source.subscribed,
                    "selectable": m.source.selectable,
                }
                for m in self.mappings
            ],
            "excluded": [list(f.path) for f in self.excluded],
            "unmatched_rules": list(self.unmatched_rules),
            "views": [list(f.path) for f in self.views],
            "archive_source": list(self.archive_source) if self.archive_source else None,
        }


def _normalized(path: Iterable[str]) -> Path:
    """The path with a top-level INBOX in canonical case (IMAP compares it case-insensitively)."""
    path = tuple(path)
    if path and path[0].upper() == INBOX:
        return (INBOX, *path[1:])
    return path


def folder_name(path: Path) -> str:
    """A folder path as users read it in logs and reports: its parts joined with "/"."""
    return "/".join(path)


def _has_use_attribute(folder: Folder) -> bool:
    return bool(folder.special_use) and _fold(folder.special_use or "") in _CANONICAL_USE


def special_use_of(folder: Folder) -> str | None:
    """The folder's special use: its RFC 6154 attribute, else the use of its well-known name.

    Attributes other than RFC 6154 uses (e.g. Gmail's ``\\Important``) are ignored. Names are
    guessed only at the top level and directly under INBOX, case-insensitively.
    """
    if _has_use_attribute(folder):
        return _CANONICAL_USE[_fold(folder.special_use or "")]
    path = _normalized(folder.path)
    if (len(path) == 1 and path != INBOX_PATH) or (len(path) == 2 and path[0] == INBOX):
        return _USE_OF_NAME.get(_fold(path[-1]))
    return None


def any_nonempty(part: str) -> bool:
    """The default name check: any non-empty component (like ``Mailbox.valid_name_part``)."""
    return bool(part)


class _Namer:
    """Fits name components to what the destination can hold."""

    def __init__(self, separator: str, valid_part: Callable[[str], bool]):
        self.separator = separator
        self.valid_part = valid_part

    def holds(self, part: str) -> bool:
        return (
            bool(part) and not (self.separator and self.separator in part) and self.valid_part(part)
        )

    def fit(self, part: str) -> tuple[str, list[str]]:
        """The component as the destination can hold it, and why it changed (empty: unchanged)."""
        if self.holds(part):
            return part, []
        if not part:
            return "_", ["empty name"]
        fixed, reasons = part, []
        if self.separator and self.separator in fixed:
            fixed = fixed.replace(self.separator, "_")
            reasons.append(f"'{part}' contains the destination separator '{self.separator}'")
        if not self.holds(fixed):
            reasons.append(f"'{part}' is not a valid name on the destination")
            fixed = "".join("_" if self._bad_char(c) else c for c in fixed)
        if not self.holds(fixed):
            # Leading or trailing dots and blanks are refused by several servers (Exchange).
            fixed = re.sub(r"^[\s.]+|[\s.]+$", lambda m: "_" * len(m.group()), fixed)
        if not self.holds(fixed):
            raise FolderMappingError(
                f"folder name '{part}' cannot be made valid on the destination"
            )
        return fixed, reasons

    def _bad_char(self, char: str) -> bool:
        return unicodedata.category(char).startswith("C") or not self.valid_part(char)

    def suffixed(self, part: str, number: int) -> str:
        return self.fit(f"{part} ({number})")[0]


@dataclass(frozen=True)
class _Anchor:
    """A destination path fixed by something other than the parent's (rule, use, INBOX, pin)."""

    path: Path
    rank: int
    reasons: tuple[str, ...]


# Ranks for contested destination paths (lower keeps the path).
_KEPT, _SPECIAL, _OWN_NAME, _RULE, _FITTED = range(5)


Resolution = dict[Path, tuple[Path, list[str]]]


def _resolve(
    paths: list[Path], anchors: Mapping[Path, _Anchor], namer: _Namer, key: Callable[[Path], Any]
) -> Resolution:
    """Destination path and rename reasons for every source path (sorted, parents included).

    Resolved level by level of the destination hierarchy: a folder that follows its parent needs
    the parent's final path, and every claimant of a path has a path of the same length.
    """
    depth: dict[Path, int] = {}
    for path in paths:
        if path in anchors:
            depth[path] = len(anchors[path].path)
        else:
            depth[path] = depth[path[:-1]] + 1 if len(path) > 1 else 1
    final: dict[Path, Path] = {}
    reasons: dict[Path, list[str]] = {}
    for level in sorted(set(depth.values())):
        wanted: list[tuple[Any, int, Path, Path]] = []
        for path in (p for p in paths if depth[p] == level):
            if path in anchors:
                anchor = anchors[path]
                desired, rank, why = anchor.path, anchor.rank, list(anchor.reasons)
            else:
                part, why = namer.fit(path[-1])
                desired = (*final[path[:-1]], part) if len(path) > 1 else (part,)
                rank = _FITTED if why else _OWN_NAME
            wanted.append((key(desired), rank, path, desired))
            reasons[path] = why
        wanted.sort()
        taken = {w[0] for w in wanted}
        holders: dict[Any, Path] = {}
        for wanted_key, _rank, path, desired in wanted:
            if wanted_key not in holders:
                holders[wanted_key] = path
                final[path] = desired
                continue
            number = 2
            while key(candidate := (*desired[:-1], namer.suffixed(desired[-1], number))) in taken:
                number += 1
            taken.add(key(candidate))
            final[path] = candidate
            holder = folder_name(holders[wanted_key])
            reasons[path].append(f"'{folder_name(desired)}' is taken by source folder '{holder}'")
    return {path: (final[path], reasons[path]) for path in paths}


def _renamed(path: Path, reasons: list[str], resolved: Resolution) -> str | None:
    """Why ``path`` maps where ``resolved`` puts it (``reasons`` are its own), ``None`` if unmoved."""
    if resolved[path][0] == path:
        return None
    if reasons:
        return "; ".join(reasons)
    parent = path[:-1]
    return f"parent '{folder_name(parent)}' maps to '{folder_name(resolved[parent][0])}'"


def _kept_reason(path: Path, kept: Resolution, natural: Resolution, namer: _Namer) -> str | None:
    """The reason for a path kept from an earlier pass: the one it would have now if any."""
    if kept[path][0] == natural[path][0]:
        return _renamed(path, natural[path][1], natural)
    part, why = namer.fit(path[-1])
    if kept[path][0] == (*(kept[path[:-1]][0] if len(path) > 1 else ()), part):
        return _renamed(path, why, kept)
    return "kept as mapped by an earlier pass"


def _rule_path(text: str, what: str) -> Path:
    path = _normalized(part for part in text.strip("/").split("/"))
    if not all(path):
        raise FolderMappingError(f"folder rule: {what} '{text}' is not a folder path")
    return path


def _excluded(path: Path, patterns: Iterable[str]) -> bool:
    names = ["/".join(path[:i]) for i in range(1, len(path) + 1)]
    return any(fnmatchcase(name, pattern) for pattern in patterns for name in names)


def _by_path(folders: Iterable[Folder]) -> dict[Path, Folder]:
    """Folders by normalized path, one per path (the first in a stable order), sorted."""
    ordered = sorted(
        folders,
        key=lambda f: (
            _normalized(f.path),
            f.path,
            f.name,
            f.special_use or "",
            f.subscribed,
            f.selectable,
        ),
    )
    result: dict[Path, Folder] = {}
    for folder in ordered:
        result.setdefault(_normalized(folder.path), folder)
    return result


def _destination_targets(destination: Iterable[Folder]) -> dict[str, Path]:
    """The destination folder for each mapped use: by attribute, else by well-known name."""
    candidates = sorted(
        (f for f in _by_path(destination).values() if f.selectable),
        key=lambda f: (len(f.path), _normalized(f.path)),
    )
    targets: dict[str, Path] = {}
    for by_attribute in (True, False):
        for folder in candidates:
            if _has_use_attribute(folder) == by_attribute:
                use = special_use_of(folder)
                if use in MAPPED_USES and _normalized(folder.path) != INBOX_PATH:
                    targets.setdefault(use, _normalized(folder.path))
    return targets


def map_folders(
    source: list[Folder],
    destination: list[Folder],
    rules: FolderRules,
    *,
    destination_separator: str,
    valid_part: Callable[[str], bool] = any_nonempty,
    case_sensitive: bool = True,
    previous: Mapping[Path, Path] | None = None,
    views: Iterable[Path] = (),
    archive_source: Path | None = None,
    label_root: Path | None = None,
) -> FolderPlan:
    """Map every source folder to a destination path.

    :param source: the source's folders (containers included; order does not matter).
    :param destination: the destination's folders as they are now.
    :param rules: the plan's exclude globs and rename map ("/"-joined source paths).
    :param destination_separator: the destination's hierarchy separator ("" when it has none).
    :param valid_part: whether the destination can hold one name component as it is.
    :param case_sensitive: ``False`` when the destination compares names without case (Exchange).
    :param previous: source path -> destination path from an earlier pass
        (:meth:`FolderPlan.destinations`); those folders keep their path, so a folder appearing
        later never takes over a destination folder that already holds another's messages.
    :param views: a label-based source's views (``\\All``, ``\\Flagged``...): not mapped.
    :param archive_source: a label-based source's ``\\All`` folder: mapped onto the archive.
    :param label_root: the container of a label-based source's system folders (``[Gmail]``):
        its folders are mapped as if they were at the top level.
    :raises FolderMappingError: a rule or name that cannot be mapped at all.
    """
    namer = _Namer(destination_separator, valid_part)

    def key(path: Path) -> Any:
        return path if case_sensitive else tuple(_fold(part) for part in path)

    listed = _by_path(source)
    skipped = {_normalized(path) for path in views}
    left_out = [f for path, f in listed.items() if path in skipped]
    listed = {path: f for path, f in listed.items() if path not in skipped}
    known = set(listed) | {path[:i] for path in listed for i in range(1, len(path))}
    unmatched = [
        f"exclude '{pattern}' matches no folder"
        for pattern in rules.exclude
        if not any(fnmatchcase(folder_name(path), pattern) for path in known)
    ]
    renames: dict[Path, Path] = {}
    for source_text, destination_text in sorted(rules.rename.items()):
        path = _rule_path(source_text, "source")
        renames[path] = _rule_path(destination_text, "destination")
        if path not in known:
            unmatched.append(f"rename '{source_text}' matches no folder")

    excluded = [f for path, f in listed.items() if _excluded(path, rules.exclude)]
    folders = {path: f for path, f in listed.items() if not _excluded(path, rules.exclude)}
    for path in list(folders):
        for i in range(1, len(path)):
            parent = path[:i]
            if parent not in folders:
                folders[parent] = Folder(
                    parent, folder_name(parent), subscribed=False, selectable=False
                )
    paths = sorted(folders)

    def under_rule(path: Path) -> bool:
        return any(path[:i] in renames for i in range(1, len(path) + 1))

    kept = {_normalized(s): _normalized(d) for s, d in (previous or {}).items()}
    kept = {s: d for s, d in kept.items() if s in folders}
    # Who serves a use: a folder kept from an earlier pass, then by attribute, then by path.
    claims: dict[str, list[tuple[bool, bool, Path]]] = {}
    for path in paths:
        folder = folders[path]
        use = special_use_of(folder)
        if archive_source and (use == "\\Archive") != (path == archive_source):
            use = "\\Archive" if path == archive_source else None  # a label is no use
        if use and folder.selectable and path != INBOX_PATH and not under_rule(path):
            claims.setdefault(use, []).append(
                (path not in kept, not _has_use_attribute(folder), path)
            )
    use_of = {min(claimants)[2]: use for use, claimants in claims.items()}
    targets = _destination_targets(destination)

    anchors: dict[Path, _Anchor] = {}
    for path in paths:
        use = use_of.get(path)
        if path in renames:
            fitted = [namer.fit(part) for part in renames[path]]
            reasons = ["plan rule", *(why for _, whys in fitted for why in whys)]
            target = _normalized(part for part, _ in fitted)
            anchors[path] = _Anchor(target, _RULE, tuple(reasons))
        elif path == INBOX_PATH:
            anchors[path] = _Anchor(INBOX_PATH, _KEPT, ())
        elif path == archive_source:
            target = targets.get("\\Archive", ("Archive",))
            why = f"only its archived messages (in no other folder), to '{folder_name(target)}'"
            anchors[path] = _Anchor(target, _SPECIAL, (why,))
        elif use in targets:
            why = f"special use {use}: the destination's '{folder_name(targets[use])}'"
            anchors[path] = _Anchor(targets[use], _SPECIAL, (why,))
        elif label_root and len(path) == len(label_root) + 1 and path[:-1] == label_root:
            part, whys = namer.fit(path[-1])
            why = f"Gmail's system folder, at the top level without '{folder_name(label_root)}'"
            anchors[path] = _Anchor((part,), _FITTED if whys else _OWN_NAME, (why, *whys))
    natural = _resolve(paths, anchors, namer, key)
    resolved = natural
    if kept:
        pins = {s: _Anchor(d, _KEPT, ()) for s, d in kept.items()}
        resolved = _resolve(paths, {**anchors, **pins}, namer, key)

    mappings = []
    for path in paths:
        use = use_of.get(path)
        if path in kept:
            renamed = _kept_reason(path, resolved, natural, namer)
        else:
            renamed = _renamed(path, resolved[path][1], resolved)
        create = use if use in MAPPED_USES and use not in targets else None
        mappings.append(FolderMapping(folders[path], resolved[path][0], use, create, renamed))
    if archive_source is not None or left_out:
        mappings = _without_empty_containers(mappings)
    mappings.sort(key=lambda m: m.destination)
    plan = FolderPlan(mappings, excluded, unmatched, left_out)
    plan.archive_source = archive_source if archive_source in folders else None
    return plan


def _without_empty_containers(mappings: list[FolderMapping]) -> list[FolderMapping]:
    """The mappings less the containers no mapped folder is copied into (Gmail's ``[Gmail]``,
    whose folders went to the destination's special-use folders or were views)."""
    used = {m.destination[:i] for m in mappings if m.source.selectable
            for i in range(1, len(m.destination) + 1)}  # fmt: skip
    return [m for m in mappings if m.source.selectable or m.destination in used]
