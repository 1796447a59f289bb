"""Reading values out of a plan file: :class:`YamlReader` takes composed YAML nodes (so every
value keeps its line) and returns typed values, recording a ``file:line`` :class:`Problem` in
:class:`Problems` for anything wrong instead of stopping at the first; the plain parsers behind
it (:func:`parse_duration`, :func:`parse_size`, :func:`split_host_port`, :func:`valid_domain`)
also serve code that reads the same notations elsewhere. Nothing here knows the plan's keys.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import re
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mailmigrate.plan_model import Problem

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([wdhms])", re.IGNORECASE)
_DURATION_UNITS = {"w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:([kmgt])(?:i?b)?|b)?$", re.IGNORECASE)
_SIZE_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def suggest(word: str, choices: tuple[str, ...] | list[str]) -> str:
    """``'; did you mean "x"?'`` for the choice closest to a misspelt word, else ``""``."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f'; did you mean "{close[0]}"?' if close else ""


def parse_duration(value: Any) -> float | None:
    """Seconds of ``30s``, ``10m``, ``2h``, ``7d``, ``1w``, ``1h30m`` or a number; ``None`` if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    text = str(value).strip()
    try:
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    except ValueError:
        pass
    parts = _DURATION_PART.findall(text)
    if not parts or _DURATION_PART.sub("", text).strip():
        return None
    return float(sum(float(amount) * _DURATION_UNITS[unit.lower()] for amount, unit in parts))


def parse_size(value: Any) -> int | None:
    """Bytes of ``16MB``, ``512k``, ``1.5GiB`` (binary units) or an integer; ``None`` if invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value).strip())
    if not match:
        return None
    return int(float(match.group(1)) * _SIZE_UNITS.get((match.group(2) or "").lower(), 1))


def split_host_port(text: str) -> tuple[str, int | None] | None:
    """``"1.1.1.1"``, ``"127.0.0.1:5353"``, ``"::1"``, ``"[::1]:53"``, ``"ns.example"`` -> (host, port).

    ``None`` when the host is not an IP address or host name or the port is not 1-65535.
    """
    text = text.strip()
    host, port = text, None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, port = text.split(":")
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if text.startswith("[") or ":" in host or not valid_domain(host):
            return None
    return host, int(port) if port is not None else None


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IPv4 or IPv6 address (not a name)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def valid_domain(name: str) -> str | None:
    """The lower-case ASCII (IDNA) form of a domain or host name, ``None`` if it is not one."""
    name = name.strip().rstrip(".").lower()
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        return None
    return ascii_name if _HOSTNAME.match(ascii_name) and not ascii_name.isdigit() else None


class Problems:
    """The problems found so far, in every file of one plan."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def add(self, file: str, line: int, message: str) -> None:
        self.items.append(Problem(file, max(line, 1), message))


def node_line(node: Node) -> int:
    """The 1-based line a node starts on."""
    return node.start_mark.line + 1


class YamlReader:
    """Reads typed values out of composed YAML nodes, recording a problem (with its line) for
    anything wrong and returning ``None`` for it."""

    def __init__(self, file: str, problems: Problems):
        self.file = file
        self.problems = problems
        self.constructor = SafeConstructor()

    def problem(self, at: Node | int, message: str) -> None:
        self.problems.add(self.file, at if isinstance(at, int) else node_line(at), message)

    def mapping(
        self, node: Node, where: str, keys: tuple[str, ...] | None, hint: str = ""
    ) -> dict[str, Node] | None:
        """The entries of a mapping node by key; unknown and repeated keys are problems.

        :param keys: the allowed keys; ``None`` allows any plain key.
        """
        if not isinstance(node, MappingNode):
            self.problem(node, f"{where or 'the plan'}: must be a mapping (key: value){hint}")
            return None
        try:
            self.constructor.flatten_mapping(node)
        except yaml.YAMLError as exc:
            self.problem(node, f"{where}: invalid merge (<<): {getattr(exc, 'problem', exc)}")
            return None
        entries: dict[str, Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, ScalarNode) else None
            path = f"{where}.{key}" if where else str(key)
            if key is None:
                self.problem(key_node, f"{where or 'the plan'}: keys must be plain names")
            elif key in entries:
                self.problem(
                    key_node, f"{path}: given twice (first on line {node_line(entries[key])})"
                )
            elif keys is not None and key not in keys:
                self.problem(
                    key_node,
                    f"{path}: unknown key{suggest(key, keys)} (allowed here: {', '.join(keys)})",
                )
            else:
                entries[key] = value_node
        return entries

    def value(self, node: Node) -> Any:
        """The Python value of a scalar node (``str``, ``int``, ``float``, ``bool``, ``None``)."""
        if not isinstance(node, ScalarNode):
            return node
        try:
            return self.constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, TypeError, OverflowError):
            return node.value

    def text(self, node: Node, where: str, example: str = "") -> str | None:
        """A non-empty string, exactly as written (so ``0123`` or ``yes`` stay text)."""
        if not isinstance(node, ScalarNode) or self.value(node) is None:
            self.problem(node, f"{where}: must be a text value{example}")
            return None
        if not node.value.strip():
            self.problem(node, f"{where}: must not be empty{example}")
            return None
        return node.value.strip()

    def integer(self, node: Node, where: str, minimum: int) -> int | None:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.problem(node, f"{where}: {self.show(node)} must be a whole number >= {minimum}")
            return None
        return value

    def number(self, node: Node, where: str) -> float | None:
        value = self.value(node)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1e18:
            self.problem(
                node, f"{where}: {self.show(node)} must be a number > 0 (or null for no limit)"
            )
            return None
        return float(value)

    def boolean(self, node: Node, where: str) -> bool | None:
        value = self.value(node)
        if not isinstance(value, bool):
            self.problem(node, f"{where}: {self.show(node)} must be true or false")
            return None
        return value

    def duration(self, node: Node, where: str) -> float | None:
        seconds = parse_duration(self.value(node)) if isinstance(node, ScalarNode) else None
        if seconds is None or seconds <= 0:
            self.problem(
                node,
                f"{where}: {self.show(node)} is not a duration > 0; write e.g. 30s, 10m, 2h, 7d "
                "or a number of seconds",
            )
            return None
        return seconds

    def size(self, node: Node, where: str) -> int | None:
        size = parse_size(self.value(node)) if isinstance(node, ScalarNode) else None
        if size is None or size <= 0:
            self.problem(
                node,
                f"{where}: {self.show(node)} is not a size > 0; write e.g. 16MB, 512KB or bytes",
            )
            return None
        return size

    def texts(self, node: Node, where: str, example: str) -> list[tuple[Node, str]] | None:
        """A list of strings, each with its node (for lines)."""
        if not isinstance(node, SequenceNode):
            self.problem(node, f"{where}: must be a list, e.g. {example}")
            return None
        items = []
        for item in node.value:
            text = self.text(item, where, f", e.g. {example}")
            if text is not None:
                items.append((item, text))
        return items

    @staticmethod
    def show(node: Node) -> str:
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        text = node.value if len(node.value) <= 60 else node.value[:57] + "..."
        return f'"{text}"'


def given(entries: dict[str, Node], key: str) -> Node | None:
    """The node of an optional key; ``key: null`` (or an empty value) means "use the default"."""
    node = entries.get(key)
    if node is None or (isinstance(node, ScalarNode) and node.tag.endswith(":null")):
        return None
    return node
