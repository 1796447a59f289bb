"""Which files of a directory Docker sends as the build context, as Docker decides it.

Docker reads ``.dockerignore`` with ``moby/patternmatcher/ignorefile`` and filters the context
with ``PatternMatcher.MatchesOrParentMatches``; this module follows those semantics (written
anew from their documented and coded behaviour, no Docker engine needed):

* lines starting with ``#`` are comments; lines are trimmed; empty lines skipped;
* a leading ``!`` makes an exception (re-includes what earlier lines excluded);
* patterns are cleaned like Go's ``filepath.Clean`` and a leading ``/`` is dropped;
* ``*`` and ``?`` never match ``/``; ``[...]`` is a character class; ``\\`` escapes;
* ``**`` matches any number of directories, zero included (``**/x`` matches ``x``; a trailing
  ``**`` matches everything below);
* a pattern that matches a parent directory of a file matches the file;
* patterns apply in order and the last one that matches decides.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_REGEX_SPECIAL = set(".+()|{}$")


def clean(path: str) -> str:
    """Go's ``filepath.Clean`` for ``/`` paths."""
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append(part)
            continue
        parts.append(part)
    cleaned = ("/" if rooted else "") + "/".join(parts)
    return cleaned or "."


@dataclass
class Pattern:
    text: str
    exclusion: bool

    def __post_init__(self) -> None:
        self.kind, self.regex = _compile(self.text)

    def match(self, path: str) -> bool:
        if self.kind == "exact":
            return path == self.text
        if self.kind == "prefix":
            return path.startswith(self.text[:-2])
        if self.kind == "suffix":
            suffix = self.text[2:]
            return path.endswith(suffix) or (suffix[:1] == "/" and path == suffix[1:])
        return self.regex.match(path) is not None


def _compile(pattern: str) -> tuple[str, re.Pattern[str] | None]:
    """The pattern's match kind (exact, prefix, suffix, regexp) and its regular expression."""
    regex, kind, i, n = "^", "exact", 0, len(pattern)
    position = 0  # characters scanned so far (``**`` at the start makes a suffix match)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                if i >= n:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        regex += ".*"
                        kind = "regexp"
                else:
                    regex += "(.*/)?"
                    kind = "regexp"
                if position == 0:
                    kind = "suffix"
            else:
                regex += "[^/]*"
                kind = "regexp"
        elif ch == "?":
            regex += "[^/]"
            kind = "regexp"
        elif ch in _REGEX_SPECIAL:
            regex += "\\" + ch
        elif ch == "\\":
            if i < n:
                regex += "\\" + pattern[i]
                i += 1
                kind = "regexp"
            else:
                regex += "\\\\"
        elif ch in "[]":
            regex += ch
            kind = "regexp"
        else:
            regex += ch
        position += 1
    return kind, re.compile(regex + "$") if kind == "regexp" else None


def read_patterns(text: str) -> list[Pattern]:
    """The patterns of a ``.dockerignore`` file, in order."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
            if not line:
                raise ValueError('illegal exclusion pattern: "!"')
        line = clean(line)
        if len(line) > 1 and line.startswith("/"):
            line = line[1:]
        patterns.append(Pattern(line, exclusion))
    return patterns


def ignored(path: str, patterns: list[Pattern]) -> bool:
    """Whether Docker leaves ``path`` (relative, ``/``-separated) out of the build context."""
    path = clean(path)
    if path == ".":
        return False
    parent = path.rpartition("/")[0]
    parents = ["/".join(parent.split("/")[: i + 1]) for i in range(parent.count("/") + 1)]
    matched = False
    for pattern in patterns:
        if pattern.exclusion != matched:
            continue
        hit = pattern.match(path) or (parent != "" and any(pattern.match(p) for p in parents))
        if hit:
            matched = not pattern.exclusion
    return matched


def build_context(root: Path, extra: list[str] = ()) -> set[str]:
    """Every file under ``root`` (plus the hypothetical relative paths ``extra``) that Docker
    would send as the build context with ``root/.dockerignore``."""
    patterns = read_patterns((root / ".dockerignore").read_text())
    prune = not any(p.exclusion for p in patterns)  # nothing below an ignored folder comes back
    files = set(extra)
    for directory, folders, names in os.walk(root):
        here = os.path.relpath(directory, root).replace(os.sep, "/")
        if prune:
            folders[:] = [f for f in folders if not ignored(f"{here}/{f}", patterns)]
        for name in names:
            files.add(os.path.relpath(os.path.join(directory, name), root).replace(os.sep, "/"))
    return {path for path in files if not ignored(path, patterns)}
