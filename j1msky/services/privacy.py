"""PII detection and masking for task text, audit details, events and webhook previews."""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

KINDS = ("email", "phone", "card", "iban", "ssn", "ip")

# A number is PII only as a whole token: not glued to a word, a sign, a currency, a path
# or another digit group (so parts of dates, prices, versions and long runs never match).
_START = r"(?<![\w+\-.,/#$€£])(?<!\d[ -])"
_END = r"(?!\w)(?![.,/:\-]\d)(?![ -]\d)"

# Dot-atom local part from the usual subset of RFC 5322 atext (so "?email=a@b.io" masks only
# the address), started only at a run's beginning to stay linear; LDH domain, alphabetic TLD.
_EMAIL = re.compile(
    r"(?<![\w%+.-])[\w%+-]+(?:\.[\w%+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![\w-])"
)
# Groups of 4 as printed, or the compact electronic form; uppercase only, as IBANs are written.
_IBAN = re.compile(r"(?<!\w)[A-Z]{2}\d{2}(?:(?: [A-Z0-9]{4})*(?: [A-Z0-9]{1,4})|[A-Z0-9]{11,30})(?!\w)")
# Either one unbroken run, or a 4-digit group followed by 2-4 groups as cards are printed (4-4-4-4, 4-6-5).
_CARD = re.compile(_START + r"(?:\d{13,19}|\d{4}(?:[ -]\d{2,6}){2,4})" + _END)
# Dashes only: spaced 3-2-4 digit groups are too often something else.
_SSN = re.compile(_START + r"(\d{3})-(\d{2})-(\d{4})" + _END)
# A trailing ".5" means a version or OID rather than an address.
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]|\.\d)")
# At least one digit, so words such as "bad::add" stay prose; times fail the ipaddress check.
_IPV6 = re.compile(
    r"(?<![\w:.])(?=[0-9A-Fa-f:.]*\d)(?:[0-9A-Fa-f]{0,4}:){1,7}"
    r"(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4}|(?<=:):)(?!\w|:[\w:]|\.\d)"
)
# A "+" and a country code make the number international; each repeat needs a separator
# so the pattern cannot backtrack exponentially.
_PHONE_INTL = re.compile(r"(?<![\w+])\+\d+(?:(?:[ -]?\(|\)[ -]?|[ -])\d+)*(?![\w(])(?![.,/:]\d)")
# National forms need separators: bare digit runs are too often ids, amounts or cards.
_PHONE_NANP = re.compile(_START + r"(?:1[ -])?(?:\(\d{3}\) ?|\d{3}[ -])\d{3}[ -]\d{4}" + _END)
# Trunk-prefix forms such as 020 7946 0958, (020) 7946 0958 and 07700 900123.
_PHONE_TRUNK = re.compile(_START + r"(?:\(0\d{1,4}\) ?|0\d{1,4}[ -])\d{3,4}[ -]?\d{3,4}" + _END)


def _digits(s: str) -> str:
    return "".join(c for c in s if c.isdigit())


def _luhn(number: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(number)):
        d = int(c) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _iban_valid(iban: str) -> bool:
    if not 15 <= len(iban) <= 34:
        return False
    moved = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def _ip_valid(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


Span = tuple[int, int, str]


def _iban_spans(text: str) -> Iterator[Span]:
    for m in _IBAN.finditer(text):
        # A printed IBAN may run into following capitalised groups; try shorter group counts.
        end = m.end()
        while end > m.start():
            if _iban_valid(text[m.start():end].replace(" ", "")):
                yield m.start(), end, "iban"
                break
            end = text.rfind(" ", m.start(), end)


def _regex_spans(
    pattern: re.Pattern[str], kind: str, valid: Callable[[re.Match[str]], bool]
) -> Callable[[str], Iterator[Span]]:
    def spans(text: str) -> Iterator[Span]:
        for m in pattern.finditer(text):
            if valid(m):
                yield m.start(), m.end(), kind
    return spans


def _ssn_valid(m: re.Match[str]) -> bool:
    area, group, serial = m.groups()
    return area not in ("000", "666") and area < "900" and group != "00" and serial != "0000"


def _phone_valid(m: re.Match[str]) -> bool:
    return 8 <= len(_digits(m.group())) <= 15


# Earlier finders win overlaps: the stricter, checksummed kinds claim their digits first.
_FINDERS: tuple[Callable[[str], Iterator[Span]], ...] = (
    _regex_spans(_EMAIL, "email", lambda m: True),
    _iban_spans,
    _regex_spans(_CARD, "card", lambda m: 13 <= len(_digits(m.group())) <= 19 and _luhn(_digits(m.group()))),
    _regex_spans(_SSN, "ssn", _ssn_valid),
    _regex_spans(_IPV6, "ip", lambda m: _ip_valid(m.group())),  # before IPv4: ::ffff:1.2.3.4 is one address
    _regex_spans(_IPV4, "ip", lambda m: _ip_valid(m.group())),
    _regex_spans(_PHONE_INTL, "phone", _phone_valid),
    _regex_spans(_PHONE_NANP, "phone", _phone_valid),
    _regex_spans(_PHONE_TRUNK, "phone", _phone_valid),
)


def _spans(text: str) -> list[Span]:
    taken: list[Span] = []
    for find in _FINDERS:
        for start, end, kind in find(text):
            if all(end <= s or start >= e for s, e, _ in taken):
                taken.append((start, end, kind))
    return sorted(taken)


def _scrub(text: str, kinds: Iterable[str]) -> tuple[str, set[str]]:
    wanted = set(kinds)
    unknown = wanted - set(KINDS)
    if unknown:
        raise ValueError(f"unknown PII kinds: {sorted(unknown)}")
    found: set[str] = set()
    # Masking one span can free a neighbour its edge was hiding ("a@b.com555-123-4567"),
    # so scan again until clean. Every span holds a digit or an "@" and no placeholder
    # does, so each pass shrinks the text's supply of them and the loop ends.
    while spans := [s for s in _spans(text) if s[2] in wanted]:
        for start, end, kind in reversed(spans):
            text = f"{text[:start]}[{kind}]{text[end:]}"
            found.add(kind)
    return text, found


def detect(text: str) -> list[str]:
    """Return the sorted PII kinds in text: exactly the kinds mask() would replace."""
    return sorted(_scrub(text, KINDS)[1])


def mask(text: str, kinds: Iterable[str] | None = None) -> str:
    """Replace each PII span of the given kinds (all by default) with "[kind]"."""
    return _scrub(text, KINDS if kinds is None else kinds)[0]


def mask_value(value: Any, kinds: Iterable[str] | None = None) -> Any:
    """Mask every string inside nested dicts, lists and tuples (tuples come back as lists); keys are kept."""
    kinds = KINDS if kinds is None else tuple(kinds)
    if isinstance(value, str):
        return mask(value, kinds)
    if isinstance(value, dict):
        return {k: mask_value(v, kinds) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(v, kinds) for v in value]
    return value


def preview(text: str, length: int = 80) -> str:
    """Mask text, then cut it to at most length characters, ending in "..." when cut."""
    masked = mask(text)
    if len(masked) <= length:
        return masked
    return masked[: max(length - 3, 0)].rstrip() + "..."
