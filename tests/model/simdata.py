"""Small simulator recordings for the trainer's tests: real raw Parquet from the real market model."""

from __future__ import annotations

from pathlib import Path

from hftbot.feed.recording import RawRecordingWriter
from hftbot.sim.generate import generate_messages
from hftbot.sim.market import ModelParams


def write_sim_raw(root: Path, seconds: float, seed: int = 1, rotate_s: float = 3600.0,
                  symbol: str = "SOLUSDT", start_ns: int | None = None) -> Path:
    """`seconds` of the default market model as raw-*.parquet under root/sim/<SYMBOL>/<date>/ (the
    recorder's layout, as `sim generate` writes it), one file per `rotate_s`; returns root."""
    params = ModelParams(symbol=symbol, seed=seed)
    with RawRecordingWriter(root, symbol, flush_s=1e9, rotate_s=rotate_s, source="sim") as w:
        generate_messages(params, seconds, w.append, start_ns=start_ns)
    return root
