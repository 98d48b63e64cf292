"""Shared fixtures: real book records rebuilt from the real capture in tests/data, small models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hftbot.records import TRADE_DTYPE, book_dtype

DATA = Path(__file__).resolve().parents[1] / "data"


def capture_books(n: int, levels: int = 10) -> np.ndarray:
    """The first `n` book records the feed's own code rebuilds from the BTCUSDT capture."""
    from hftbot.feed.capture import iter_blocks
    from hftbot.feed.core import FeedCore

    core = FeedCore(levels=levels)
    out_b = np.zeros(4096, dtype=book_dtype(levels))
    out_t = np.zeros(4096, dtype=TRADE_DTYPE)
    books, have = [], 0
    for block in iter_blocks([DATA / "btcusdt_20240808.gz"]):
        i, m = 0, len(block)
        while i < m and have < n:
            i, nb, _ = core.run(block.data, block.starts, block.ends, block.nss, i, m, out_b, out_t)
            books.append(out_b[:nb].copy())
            have += nb
        if have >= n:
            break
    out = np.concatenate(books)[:n]
    out["seq"] = np.arange(1, len(out) + 1)
    return out


@pytest.fixture(scope="session")
def real_books() -> np.ndarray:
    return capture_books(1200)
