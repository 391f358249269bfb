"""The ``fake_upstream`` pytest fixture (imported into conftest.py)."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fake_upstream import FakeUpstream


@pytest.fixture
def fake_upstream() -> Iterator[FakeUpstream]:
    """A started FakeUpstream on a free port, stopped after the test."""
    with FakeUpstream() as fake:
        yield fake
