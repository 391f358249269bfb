"""Parsing untrusted JSON text: nesting is bounded before the parser sees it.

json.loads recurses once per array or object level, so a small body nested a few
thousand levels deep raises RecursionError. The depth is measured first by a linear
scan: strings are cut out (an escaped quote does not end one, an unterminated one runs
to the end), then the brackets left are counted. While the text is valid JSON the
running count is the parser's depth; a surplus closer means the parser stops there.
"""
from __future__ import annotations

import itertools
import json
import re
from typing import Any

MAX_DEPTH = 32  # levels of arrays and objects a request body or filter may nest

# Greedy and never failing once a quote is seen, so the scan stays linear on any input.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


class TooDeep(ValueError):
    """The text nests arrays and objects deeper than MAX_DEPTH."""


def depth(text: str) -> int:
    """How deep arrays and objects nest in text (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets), initial=0))


def loads(data: str | bytes) -> Any:
    """json.loads, refusing nesting past MAX_DEPTH with TooDeep (a ValueError).

    Bytes are decoded as json.loads decodes them (UTF-8, -16 or -32)."""
    text = data.decode(json.detect_encoding(data), "surrogatepass") \
        if isinstance(data, (bytes, bytearray)) else data
    if depth(text) > MAX_DEPTH:
        raise TooDeep(f"JSON nested too deeply (more than {MAX_DEPTH} levels)")
    return json.loads(text)
