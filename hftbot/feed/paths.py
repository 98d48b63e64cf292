"""Where recordings live, from the config: shared by the feed (raw frames) and the recorder (books).

A module of its own so that the recorder process imports neither the feed process nor what the
feed pulls in (websockets, the client). It must stay import-light: the standard library only.
"""

from __future__ import annotations

from pathlib import Path


def recordings_root(cfg) -> Path:
    """`recorder.root`, or `<runtime.data_dir>/recordings` when it is empty."""
    return Path(cfg.recorder.root or Path(cfg.runtime.data_dir) / "recordings")
