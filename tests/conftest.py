"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reference import ReferenceCounts, reference_counts

CAPTURE = Path(__file__).resolve().parent / "data" / "btcusdt_20240808.gz"


@pytest.fixture(scope="session")
def capture_counts() -> ReferenceCounts:
    """What the feed must count on the shared BTCUSDT capture, from an independent plain-Python
    reading of the file (`tests.reference`), not typed in."""
    ref = reference_counts(CAPTURE)
    assert ref.depth_applied and ref.ticker_checks and ref.trades  # it read the file
    return ref
