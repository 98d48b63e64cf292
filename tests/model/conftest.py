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


@pytest.fixture(scope="session")
def sim_raw(tmp_path_factory) -> Path:
    """12 minutes of the default market model as raw Parquet, one file per 4 minutes (a diff chain
    across files, as `sim generate` writes for longer runs)."""
    from tests.model.simdata import write_sim_raw

    return write_sim_raw(tmp_path_factory.mktemp("simraw"), 720.0, seed=5, rotate_s=240.0)
