"""Derived arrays cached beside their source files, keyed by what they were built from.

The trainer's book records (`hftbot.model.dataset`) and the backtester's prepared replay arrays
(`hftbot.backtest.prepared`) are both rebuilt from raw recordings by the feed's code, which is
slow next to reading an array back. Both keep them in ``.hftbot-cache/`` beside the source (a
read-only folder falls back to the temp dir), named by a key over the source files' identities
(name, size, mtime) and a hash of the code that built them, written atomically, memory-mapped on
use. A cache is only ever a copy: a missing, stale or unreadable one is rebuilt from the source.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np

from hftbot.atomic import atomic_path

CACHE_DIR = ".hftbot-cache"


def file_identity(p: Path) -> str:
    st = p.stat()
    return f"{p.parent.name}/{p.name}:{st.st_size}:{st.st_mtime_ns}"


def cache_folder(origin: Path) -> Path:
    d = origin.parent / CACHE_DIR
    try:
        d.mkdir(exist_ok=True)
        probe = d / f".probe-{os.getpid()}"
        probe.touch()
        probe.unlink()
        return d
    except OSError:  # a read-only recordings folder: cache in the temp dir, keyed by the folder
        tag = hashlib.sha256(str(origin.parent.resolve()).encode()).hexdigest()[:16]
        d = Path(tempfile.gettempdir()) / "hftbot-cache" / tag
        d.mkdir(parents=True, exist_ok=True)
        return d


def code_hash(package_file: str, names: tuple[str, ...]) -> str:
    """sha256 of the named source files beside `package_file`: a cache built by them changes when they do."""
    h = hashlib.sha256()
    root = Path(package_file).parent
    for name in names:
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()


class NpyWriter:
    """Stream record chunks into an .npy file (header rewritten in place with the final length:
    numpy pads headers so axis 0 can grow), atomically: the name appears only when complete."""

    def __init__(self, path: Path, dtype: np.dtype) -> None:
        self._ctx = atomic_path(path)
        self._tmp = self._ctx.__enter__()
        self._fh = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self.dtype = dtype
        self.n = 0
        self._header(0)
        self._data_at = self._fh.tell()

    def _header(self, n: int) -> None:
        np.lib.format.write_array_header_2_0(
            self._fh, {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (n,)})

    def write(self, chunk: np.ndarray) -> None:
        self._fh.write(np.ascontiguousarray(chunk, dtype=self.dtype).tobytes())
        self.n += len(chunk)

    def close(self) -> None:
        self._fh.seek(0)
        self._header(self.n)
        if self._fh.tell() != self._data_at:  # pragma: no cover - numpy changed its padding rule
            raise RuntimeError("npy header grew; cannot rewrite it in place")
        self._fh.close()
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        self._fh.close()
        self._ctx.__exit__(type(exc), exc, exc.__traceback__)
