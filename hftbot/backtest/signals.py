"""Model outputs for a whole recording, computed up front in batches (docs/backtest.md, "Signals").

Live, the inference process feeds each book record to a `ModelRuntime` (numba streaming DeepLOB)
and publishes one signal per record. A backtest has every record at once. On a GPU
(`[backtest] device`) it runs the checkpoint's own TorchScript module over all complete windows in
batches (`BatchedModel`) and gets, per book record, what the streaming process would have
published: probabilities where the window is full, `SIGNAL_WARMUP` (NaN) where it is not (after
the start or a resync, an unusable book). On the CPU the batches recompute every window from
scratch, where the streaming runtime reuses what the previous record computed: the live engine
itself, record by record (`StreamingModel`), is ~6× faster there (the capture: 0.3 s against
1.6–2.1 s), so `[backtest] signals = "auto"` takes it on the CPU and the batches on CUDA.
`tests/backtest/test_signals.py` holds both equal to what the inference process publishes.

Records come from the feed's own code (`FeedCore`, as `--mode replay` publishes them), chunk by
chunk; the last `window + 1` records of a chunk are carried into the next so windows and the
features' previous-mid reference run across chunk ends. Labels (`hftbot.model.labels` with the
checkpoint's rule) look `horizon` records ahead and are computed per chunk: the last `horizon`
records of each chunk have none (-1).

`SignalSource` is what the replay loop takes instead of a checkpoint (the gate scorer and the
walk-forward pass one): signals keyed by their book record's receive time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hftbot.backtest.prepared import cached_books
from hftbot.feed.capture import iter_blocks
from hftbot.feed.core import FeedCore
from hftbot.records import SIGNAL_NO_MODEL, SIGNAL_WARMUP, TRADE_DTYPE, book_dtype

NO_LABEL = -1


@dataclass
class SignalSource:
    """Per book record (by receive time, ascending): p(down, flat, up), SIGNAL_* flags, label."""

    book_recv_ns: np.ndarray  # int64, sorted
    probs: np.ndarray  # float32 (n, 3); NaN where flags say there is no usable output
    flags: np.ndarray  # int64
    model_id: int = 0
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int8))  # int8 (n,), -1 none
    infer_ns: int = 0  # inference latency per update charged to the clock (ns)

    def __post_init__(self) -> None:
        n = len(self.book_recv_ns)
        if self.probs.shape != (n, 3) or len(self.flags) != n:
            raise ValueError(f"signals: {n} times but probs {self.probs.shape} and {len(self.flags)} flags")
        if n and (np.diff(self.book_recv_ns) < 0).any():
            raise ValueError("signals: book_recv_ns must be in ascending order")
        if not len(self.labels):
            self.labels = np.full(n, NO_LABEL, np.int8)

    @classmethod
    def from_probs(cls, book_recv_ns: np.ndarray, probs: np.ndarray, model_id: int = 1,
                   labels: np.ndarray | None = None, infer_ns: int = 0) -> SignalSource:
        """Given probabilities (n, 3) for book records at these receive times (NaN rows: warm-up)."""
        probs = np.asarray(probs, dtype=np.float32)
        flags = np.where(np.isfinite(probs).all(axis=1), 0, SIGNAL_WARMUP).astype(np.int64)
        return cls(np.asarray(book_recv_ns, dtype=np.int64), probs, flags, model_id,
                   np.asarray(labels, np.int8) if labels is not None else np.zeros(0, np.int8), infer_ns)

    def lookup(self, recv_ns: np.ndarray) -> np.ndarray:
        """Index of the signal of each book receive time, -1 where there is none."""
        i = np.searchsorted(self.book_recv_ns, recv_ns)
        i = np.minimum(i, max(len(self.book_recv_ns) - 1, 0))
        ok = len(self.book_recv_ns) > 0
        hit = (self.book_recv_ns[i] == recv_ns) if ok else np.zeros(len(recv_ns), bool)
        return np.where(hit, i, -1)


def frame_chunks(paths: list[Path], levels: int, chunk_frames: int) -> Iterator[tuple]:
    """(block, first frame, end frame, book records, trade records) per `chunk_frames` raw frames,
    by the live feed's code (`FeedCore` in replay mode); book `seq` numbered across the run. The
    one chunking of a recording that the signals and the replay loop (`engine.chunks`) share."""
    core = FeedCore(levels=levels, replay=True)
    out_b = np.zeros(chunk_frames, dtype=book_dtype(levels))
    out_t = np.zeros(chunk_frames, dtype=TRADE_DTYPE)
    seq = 0
    for blk in iter_blocks(paths):
        i, n = 0, len(blk)
        while i < n:
            i2, nb, nt = core.run(blk.data, blk.starts, blk.ends, blk.nss, i, min(n, i + chunk_frames), out_b, out_t)
            books = out_b[:nb].copy()
            books["seq"] = np.arange(seq + 1, seq + nb + 1)
            seq += nb
            yield blk, i, i2, books, out_t[:nt].copy()
            i = i2


def record_chunks(paths: list[Path], levels: int, chunk_frames: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(book records, trade records) of every `chunk_frames` raw frames, by the live feed's code."""
    for _blk, _i, _i2, books, trades in frame_chunks(paths, levels, chunk_frames):
        yield books, trades


def pick_device(device: str) -> str:
    """`[backtest] device`: auto → cuda when torch sees one, else cpu."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("backtest.device = 'cuda' but torch sees no CUDA device")
    return device


class StreamingModel:
    """The inference process's own engine (`InferenceEngine` with the checkpoint's `ModelRuntime`)
    over the records, one at a time, carried across chunks: what live publishes, by construction."""

    carries = False  # needs no records of the previous chunk: its window lives in the engine

    def __init__(self, ckpt, levels: int) -> None:
        from hftbot.model.engine import InferenceEngine, ModelRuntime

        self.engine = InferenceEngine(levels=levels)
        self.engine.runtime = ModelRuntime(ckpt)

    def probs(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probs float32 (n, 3), NaN where the signal is not usable; flags (n,)) of the next records."""
        eng = self.engine
        n = len(records)
        out = np.full((n, 3), np.nan, dtype=np.float32)
        flags = np.empty(n, dtype=np.int64)
        for i in range(n):
            rec = records[i : i + 1].reshape(())
            eng.push(rec)
            sig = eng.signal(rec, 0)
            f = flags[i] = sig["flags"].item()
            if not f:
                out[i] = (sig["p_down"].item(), sig["p_flat"].item(), sig["p_up"].item())
        return out, flags


class BatchedModel:
    """A checkpoint's TorchScript module over windows of book records, in batches."""

    carries = True  # a chunk's first windows start in the previous chunk

    def __init__(self, ckpt, device: str = "auto", batch: int = 2048) -> None:
        import torch

        self.ckpt = ckpt
        self.spec = ckpt.spec
        self.device = pick_device(device)
        self.batch = batch
        self.module = ckpt.script.to(self.device)
        self.module.eval()
        self._torch = torch

    def probs(self, records: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probs float32 (n, 3) NaN where no full window, flags (n,)) for contiguous book records."""
        from hftbot.model.features import windows_from_records

        torch = self._torch
        n = len(records)
        out = np.full((n, 3), np.nan, dtype=np.float32)
        flags = np.full(n, SIGNAL_WARMUP, dtype=np.int64)
        if not n:
            return out, flags
        wins, ends = windows_from_records(records, self.spec)
        with torch.inference_mode():
            for a in range(0, len(ends), self.batch):
                x = torch.from_numpy(np.ascontiguousarray(wins[a : a + self.batch])).to(self.device)
                p = torch.softmax(self.module(x).float(), dim=1).cpu().numpy()
                out[ends[a : a + self.batch]] = p
        flags[ends] = 0
        return out, flags


def _rule(ckpt):
    from hftbot.model.labels import LabelRule

    lab = (ckpt.meta or {}).get("labels") or {}
    if not lab.get("horizon"):
        return None
    return LabelRule(int(lab["horizon"]), float(lab.get("threshold_bps") or 0.0), lab.get("rule") or "next_vs_prev")


def measure_inference_ns(ckpt, records: np.ndarray, n: int = 200) -> int:
    """Median time of one streaming update (push + forward) on this machine: the live cost per signal."""
    from hftbot.model.engine import ModelRuntime

    rt = ModelRuntime(ckpt)
    w = ckpt.spec.window
    if len(records) < w + 2:
        return 0
    for r in records[:w]:
        rt.push(r)
    times = []
    for r in records[w : w + n]:
        t0 = time.perf_counter_ns()
        rt.push(r)
        if rt.ready:
            rt.probabilities()
        times.append(time.perf_counter_ns() - t0)
    return int(np.median(times)) if times else 0


def signal_model(ckpt, levels: int, device: str = "auto", batch: int = 2048, method: str = "auto"):
    """`[backtest] signals`: "batched" (TorchScript batches on `device`), "streaming" (the live
    engine, CPU), or "auto": batched on CUDA, streaming on the CPU (the faster there)."""
    if method not in ("auto", "batched", "streaming"):
        raise ValueError(f"backtest.signals must be auto, batched or streaming, got {method!r}")
    if method == "streaming" or (method == "auto" and pick_device(device) == "cpu"):
        return StreamingModel(ckpt, levels)
    return BatchedModel(ckpt, device, batch)


def compute_signals(paths: list[Path], ckpt, *, levels: int = 10, device: str = "auto", batch: int = 2048,
                    chunk_frames: int = 100_000, infer_ns: int = -1, use_cache: bool = False,
                    method: str = "auto") -> SignalSource:
    """Signals for every book record under `paths` (the live feed's records), computed up front
    by `signal_model(method)`.

    `infer_ns` < 0: measured (`measure_inference_ns`) on the first records. `use_cache`: read the
    records from the backtester's prepared cache when a complete one is there (the same records,
    in the same chunks: the signals are identical), else decode the frames."""
    lv = max(levels, ckpt.spec.levels)
    model = signal_model(ckpt, lv, device, batch, method)
    rule = _rule(ckpt)
    carry = ckpt.spec.window + 1
    tail = None
    t_parts, p_parts, f_parts, l_parts = [], [], [], []
    cached = cached_books(paths, lv, chunk_frames) if use_cache else None
    source = cached if cached is not None else (b for b, _ in record_chunks(paths, lv, chunk_frames))
    for books in source:
        if not len(books):
            continue
        recs = books if tail is None else np.concatenate([tail, books])
        skip = 0 if tail is None else len(tail)
        if model.carries:  # windows that start in the previous chunk: run over its tail too
            p, f = model.probs(recs)
            p, f = p[skip:], f[skip:]
        else:  # the live engine keeps its own window across chunks: the new records only
            p, f = model.probs(books)
        if infer_ns < 0:
            infer_ns = measure_inference_ns(ckpt, recs)
        if rule is not None:
            from hftbot.model.labels import labels_for

            lab = labels_for(recs, rule)
        else:
            lab = np.full(len(recs), NO_LABEL, np.int8)
        t_parts.append(recs["recv_ns"][skip:])
        p_parts.append(p)
        f_parts.append(f)
        l_parts.append(lab[skip:].astype(np.int8))
        tail = recs[-carry:].copy()
    if not t_parts:
        raise ValueError(f"signals: no book records under {paths}")
    t = np.concatenate(t_parts)
    order = np.argsort(t, kind="stable")
    return SignalSource(t[order], np.concatenate(p_parts)[order], np.concatenate(f_parts)[order],
                        ckpt.model_id, np.concatenate(l_parts)[order], max(infer_ns, 0))


def no_model(book_recv_ns: np.ndarray) -> SignalSource:
    """Signals that say "no model" (deeplob without a checkpoint trades nothing, as live)."""
    n = len(book_recv_ns)
    return SignalSource(np.asarray(book_recv_ns, np.int64), np.full((n, 3), np.nan, np.float32),
                        np.full(n, SIGNAL_NO_MODEL, np.int64), 0)
