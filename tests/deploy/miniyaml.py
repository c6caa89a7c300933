"""A small, strict loader for the YAML subset that ``deploy/`` uses (PyYAML is no test dependency).

Supported: ``---`` documents, block mappings and sequences, comments, plain / single- / double-quoted
scalars (int, bool, null resolved as YAML does), flow sequences of scalars, ``{}``, anchors on
mapping values (``&name``), aliases (``*name``) and merge keys (``<<: *name``). Anything else (block
scalars ``|``/``>``, nested flow collections, tags) raises :class:`YamlError`, so a file never parses
into something other than what a real YAML parser reads.
"""

from __future__ import annotations

import json
import re
from typing import Any

_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")


class YamlError(ValueError):
    """The text is outside the supported subset (or not YAML)."""


def load_all(text: str) -> list[Any]:
    """Every document of ``text``, in order (empty documents skipped)."""
    documents: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.rstrip() == "---":
            documents.append([])
        else:
            documents[-1].append(line)
    return [doc for doc in (_Parser(lines).parse() for lines in documents) if doc is not None]


def load(text: str) -> Any:
    docs = load_all(text)
    if len(docs) != 1:
        raise YamlError(f"expected one document, found {len(docs)}")
    return docs[0]


def _strip_comment(text: str) -> str:
    quote = ""
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"" and (i == 0 or text[i - 1] in " [,"):
            quote = char
        elif char == "#" and (i == 0 or text[i - 1] == " "):
            return text[:i].rstrip()
    return text.rstrip()


def _split_key(text: str) -> tuple[str, str] | None:
    """``key: value`` → (key, value); None when the text is not a mapping entry."""
    quote = ""
    for i, char in enumerate(text):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"" and i == 0:
            quote = char
        elif char == ":" and (i + 1 == len(text) or text[i + 1] == " "):
            key = text[:i].strip()
            if key.startswith(("[", "{", "- ")) or key == "-":
                return None
            return _scalar(key) if key[0] in "'\"" else key, text[i + 1 :].strip()
        elif char in "[{" and i == 0:
            return None
    return None


def _scalar(text: str) -> Any:
    if text.startswith('"'):
        if not text.endswith('"') or len(text) < 2:
            raise YamlError(f"unterminated string {text!r}")
        return json.loads(text)  # YAML double-quoted escapes used here are JSON's
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise YamlError(f"unterminated string {text!r}")
        return text[1:-1].replace("''", "'")
    if text.startswith(("|", ">", "!", "%", "@", "`")):
        raise YamlError(f"unsupported YAML: {text!r}")
    if text.startswith("["):
        return _flow_sequence(text)
    if text.startswith("{"):
        if text.replace(" ", "") != "{}":
            raise YamlError(f"unsupported flow mapping: {text!r}")
        return {}
    if text in ("", "~", "null", "Null", "NULL"):
        return None
    if text in ("true", "True", "TRUE"):
        return True
    if text in ("false", "False", "FALSE"):
        return False
    if text in ("yes", "no", "on", "off", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF"):
        # YAML 1.1 (PyYAML, Kubernetes' sigs.k8s.io/yaml) and 1.2 (compose-go) disagree: quote it.
        raise YamlError(f"ambiguous plain scalar {text!r}: quote it")
    if _INT.fullmatch(text):
        return int(text)
    return text


def _flow_sequence(text: str) -> list[Any]:
    if not text.endswith("]"):
        raise YamlError(f"unterminated flow sequence {text!r}")
    inner = text[1:-1].strip()
    if not inner:
        return []
    items, current, quote = [], "", ""
    for char in inner:
        if quote:
            current += char
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            current += char
        elif char in "[]{}":
            raise YamlError(f"nested flow collections are unsupported: {text!r}")
        elif char == ",":
            items.append(_scalar(current.strip()))
            current = ""
        else:
            current += char
    items.append(_scalar(current.strip()))
    return items


class _Parser:
    def __init__(self, raw: list[str]) -> None:
        self.lines: list[tuple[int, str]] = []
        for line in raw:
            if "\t" in line[: len(line) - len(line.lstrip())]:
                raise YamlError("tabs in indentation")
            text = _strip_comment(line)
            if text.strip():
                self.lines.append((len(text) - len(text.lstrip()), text.strip()))
        self.anchors: dict[str, Any] = {}

    def parse(self) -> Any:
        if not self.lines:
            return None
        value, end = self._block(0, self.lines[0][0])
        if end != len(self.lines):
            raise YamlError(f"unexpected indentation at {self.lines[end][1]!r}")
        return value

    def _block(self, i: int, indent: int) -> tuple[Any, int]:
        text = self.lines[i][1]
        if text == "-" or text.startswith("- "):
            return self._sequence(i, indent)
        if _split_key(text) is None:
            raise YamlError(f"expected a mapping or a sequence at {text!r}")
        return self._mapping(i, indent)

    def _sequence(self, i: int, indent: int) -> tuple[list[Any], int]:
        items: list[Any] = []
        while i < len(self.lines) and self.lines[i][0] == indent:
            text = self.lines[i][1]
            if not (text == "-" or text.startswith("- ")):
                break
            rest = text[1:].lstrip()
            if not rest:
                if i + 1 >= len(self.lines) or self.lines[i + 1][0] <= indent:
                    items.append(None)
                    i += 1
                else:
                    value, i = self._block(i + 1, self.lines[i + 1][0])
                    items.append(value)
            elif rest.startswith("- ") or _split_key(rest) is not None:
                item_indent = indent + len(text) - len(rest)
                self.lines[i] = (item_indent, rest)
                value, i = self._block(i, item_indent)
                items.append(value)
            else:
                items.append(self._value(rest))
                i += 1
        return items, i

    def _mapping(self, i: int, indent: int) -> tuple[dict[Any, Any], int]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        while i < len(self.lines) and self.lines[i][0] == indent:
            entry = _split_key(self.lines[i][1])
            if entry is None:
                break
            key, rest = entry
            anchor = None
            if rest.startswith("&"):
                anchor, _, rest = rest[1:].partition(" ")
                rest = rest.strip()
            i += 1
            if rest:
                value = self._value(rest)
            elif i < len(self.lines) and (
                self.lines[i][0] > indent
                or (self.lines[i][0] == indent and self.lines[i][1].startswith("- "))
            ):
                value, i = self._block(i, self.lines[i][0])
            else:
                value = None
            if anchor:
                self.anchors[anchor] = value
            if key == "<<":
                if not isinstance(value, dict):
                    raise YamlError("a merge key needs a mapping")
                merged.update(value)
                continue
            if key in result:
                raise YamlError(f"duplicate key {key!r}")
            result[key] = value
        return {**merged, **result}, i

    def _value(self, text: str) -> Any:
        if text.startswith("*"):
            name = text[1:]
            if name not in self.anchors:
                raise YamlError(f"unknown alias *{name}")
            return self.anchors[name]
        if text.startswith("&"):
            raise YamlError(f"anchors on scalars are unsupported: {text!r}")
        return _scalar(text)
