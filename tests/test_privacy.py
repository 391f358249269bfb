"""services/privacy.py: what counts as PII, and that masking removes exactly that."""
from __future__ import annotations

import pytest

from j1msky.services.privacy import KINDS, detect, mask, mask_value, preview

POSITIVES = [
    ("alice@example.com", "email"),
    ("first.last+tag@mail.example.co.uk", "email"),
    ("Bob_99@Sub-Domain.Example.ORG", "email"),
    ("+44 20 7946 0958", "phone"),
    ("+44 (0)20 7946 0958", "phone"),
    ("+1 (555) 123-4567", "phone"),
    ("+14155552671", "phone"),
    ("(555) 123-4567", "phone"),
    ("555-123-4567", "phone"),
    ("1-555-123-4567", "phone"),
    ("020 7946 0958", "phone"),
    ("(020) 7946 0958", "phone"),
    ("07700 900123", "phone"),
    ("4111 1111 1111 1111", "card"),
    ("5500-0000-0000-0004", "card"),
    ("4111111111111111", "card"),
    ("3782 822463 10005", "card"),
    ("6011000990139424", "card"),
    ("GB82 WEST 1234 5698 7654 32", "iban"),
    ("DE89370400440532013000", "iban"),
    ("DE89 3704 0044 0532 0130 00", "iban"),
    ("FR14 2004 1010 0505 0001 3M02 606", "iban"),
    ("NL91ABNA0417164300", "iban"),
    ("078-05-1120", "ssn"),
    ("123-45-6789", "ssn"),
    ("665-99-0001", "ssn"),
    ("192.168.1.100", "ip"),
    ("8.8.8.8", "ip"),
    ("255.255.255.0", "ip"),
    ("2001:db8::1", "ip"),
    ("fe80::1ff:fe23:4567:890a", "ip"),
    ("2001:0db8:85a3:0000:0000:8a2e:0370:7334", "ip"),
    ("::ffff:192.168.1.1", "ip"),
]

NEGATIVES = [
    "4111 1111 1111 1112",  # fails Luhn
    "1234567890123456",  # fails Luhn, and a bare run is no phone either
    "4111 1111 1111 1111 5500",  # 20 digits: too long for a card
    "GB82 WEST 1234 5698 7654 33",  # wrong IBAN check digits
    "DE89370400440532013001",
    "000-12-3456",  # SSN area 000
    "666-12-3456",
    "900-12-3456",
    "123-00-4567",  # group 00
    "123-45-0000",  # serial 0000
    "999.1.1.1",  # octet over 255
    "256.1.1.1",
    "2026-02-19",
    "2026-02-19T12:30:45Z",
    "12:30:45",
    "12:30",
    "00:1A:2B:3C:4D:5E",  # MAC address
    "1.2.3.4.5",
    "v10.2.3",
    "#123456",
    "#12345678",
    "order 12345678",
    "call 5551234567",
    "555-1234",
    "$1,234.56",
    "€1.234,56",
    "1,000,000",
    "ISBN 978-3-16-148410-0",
    "12/31/2026",
    "std::vector and Foo::Bar and bad::add",
    "user@localhost",
    "Please summarise the quarterly report for the team by Friday.",
    "",
]


@pytest.mark.parametrize("text, kind", POSITIVES)
def test_detects_each_kind_alone_and_in_a_sentence(text, kind):
    assert detect(text) == [kind]
    assert detect(f"Contact: {text}, thanks.") == [kind]


@pytest.mark.parametrize("text, kind", POSITIVES)
def test_mask_replaces_the_whole_span_with_its_placeholder(text, kind):
    assert mask(f"Contact: {text}, thanks.") == f"Contact: [{kind}], thanks."


@pytest.mark.parametrize("text", NEGATIVES)
def test_not_pii(text):
    assert detect(text) == []
    assert mask(text) == text


def test_mixed_text_finds_every_kind_sorted():
    text = (
        "Customer alice@example.com (tel +44 20 7946 0958) paid with 4111 1111 1111 1111 "
        "from GB82 WEST 1234 5698 7654 32, SSN 078-05-1120, logged in from 192.168.1.100 "
        "and 2001:db8::1 on 2026-02-19 at 12:30:45, total $1,234.56, order #123456."
    )
    assert detect(text) == sorted(KINDS)
    assert mask(text) == (
        "Customer [email] (tel [phone]) paid with [card] "
        "from [iban], SSN [ssn], logged in from [ip] "
        "and [ip] on 2026-02-19 at 12:30:45, total $1,234.56, order #123456."
    )


def test_mask_round_trip_over_all_positives():
    text = " | ".join(t for t, _ in POSITIVES)
    assert detect(mask(text)) == []
    for t, _ in POSITIVES:
        assert detect(mask(t)) == []


def test_masking_one_span_cannot_reveal_its_neighbour():
    text = "alice@example.com+44 20 7946 0958"
    assert detect(text) == ["email", "phone"]
    assert mask(text) == "[email][phone]"


def test_mask_only_the_requested_kinds():
    text = "alice@example.com called 555-123-4567"
    assert mask(text, ["phone"]) == "alice@example.com called [phone]"
    assert mask(text, []) == text


def test_mask_rejects_unknown_kinds():
    with pytest.raises(ValueError, match="passport"):
        mask("x", ["passport"])


def test_mask_value_masks_strings_in_nested_structures():
    payload = {
        "task": "Email alice@example.com",
        "count": 3,
        "ok": True,
        "missing": None,
        "nested": {"ips": ["192.168.1.100", "no pii"], "card": ("4111111111111111",)},
    }
    assert mask_value(payload) == {
        "task": "Email [email]",
        "count": 3,
        "ok": True,
        "missing": None,
        "nested": {"ips": ["[ip]", "no pii"], "card": ["[card]"]},
    }
    assert mask_value("555-123-4567", ["email"]) == "555-123-4567"
    assert mask_value(42) == 42


@pytest.mark.parametrize(
    "text, length, expected",
    [
        ("Generate report", 80, "Generate report"),
        ("Email alice@example.com now", 80, "Email [email] now"),
        ("Generate report for Q4 revenue", 18, "Generate report..."),
        ("Send to alice@example.com and bob@example.com", 20, "Send to [email] a..."),
        ("x" * 10, 10, "x" * 10),
        ("x" * 11, 10, "x" * 7 + "..."),
    ],
)
def test_preview_masks_then_truncates(text, length, expected):
    result = preview(text, length)
    assert result == expected
    assert len(result) <= length
