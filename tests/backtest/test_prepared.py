"""The prepared-replay cache: a second run reads arrays back and gets the very same result; a corrupt,
stale or unfinished cache is never read; `cache = false` neither reads nor writes one."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from hftbot.backtest import engine
from hftbot.backtest.engine import run_backtest
from hftbot.backtest.prepared import _PageReleaser, cache_dir
from hftbot.config import load_config
from tests.backtest.build import imbalance_tape
from tests.backtest.capture import T0_MS

MS = 1_000_000


@pytest.fixture
def tape(tmp_path):
    return imbalance_tape(tmp_path / "solusdt.gz", seconds=120.0)


def _cfg(**bt):
    return load_config(env={}).override("backtest", order_entry_us=100.0, order_response_us=100.0, **bt)


def _facts(r) -> tuple:
    return (r.events, r.orders, len(r.fills), r.start_ns, r.end_ns, r.fills.tobytes(), r.equity.tobytes(),
            [(t.side, t.qty, t.net_pnl) for t in r.trades])


def _no_decoding(monkeypatch) -> None:
    def refuse(*_a, **_k):
        raise AssertionError("the recording was decoded again: the cache was not read")

    monkeypatch.setattr(engine, "chunks", refuse)


def test_a_second_run_reads_the_prepared_arrays_and_gets_the_same_result(tape, monkeypatch) -> None:
    cfg = _cfg()
    first = run_backtest([tape], strategy="mm", cfg=cfg)
    folder = cache_dir([tape], cfg.feed.levels, cfg.backtest.chunk_frames)
    assert folder is not None and (folder / "meta.json").exists()
    assert folder.parent == tape.parent / ".hftbot-cache"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["lengths"]["rows"] == first.events > 0 and meta["tick_u"] > 0
    assert first.orders > 0 and len(first.fills) > 0  # a run that trades: the comparison means something
    _no_decoding(monkeypatch)
    second = run_backtest([tape], strategy="mm", cfg=cfg)
    assert _facts(second) == _facts(first)
    # small chunks are another key (their own cache), and give the same result again
    monkeypatch.undo()
    small = _cfg(chunk_frames=300)
    assert cache_dir([tape], small.feed.levels, 300) != folder
    small_first = run_backtest([tape], strategy="mm", cfg=small)
    assert _facts(small_first)[:5] == _facts(first)[:5]
    # read back chunk by chunk, each earlier chunk's pages released as the next is handed out
    assert len(np.load(cache_dir([tape], small.feed.levels, 300) / "chunks.npy")) > 2
    _no_decoding(monkeypatch)
    assert _facts(run_backtest([tape], strategy="mm", cfg=small)) == _facts(small_first)


def _mapped_rss_kb(path) -> int:
    """Resident kB of this process's mappings of `path` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            first = line.split(maxsplit=1)[0]
            if not first.endswith(":"):  # a mapping's header: "start-end perms offset dev inode path"
                inside = line.rstrip().endswith(str(path))
            elif inside and first == "Rss:":
                total += int(line.split()[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_released_pages_leave_the_process_and_read_back_unchanged(tmp_path) -> None:
    path = tmp_path / "rows.npy"
    np.save(path, np.arange(2_000_000, dtype=np.int64))  # 16 MB
    m = np.load(path, mmap_mode="c")
    a = np.asarray(m)
    want = int(a.sum())
    full = _mapped_rss_kb(path)
    assert full > 14_000, full  # every page read is resident
    rel = _PageReleaser(m)
    rel.release(1_000_000)
    half = _mapped_rss_kb(path)
    assert 0.4 * full < half < 0.6 * full, (full, half)
    rel.release(1_000_000)  # again: nothing more to do
    rel.release(len(a))
    assert _mapped_rss_kb(path) <= 8
    assert int(a.sum()) == want  # touched again: the pages come back from the file, unchanged


def test_a_run_that_writes_into_its_rows_leaves_the_cache_as_it_was(tmp_path, monkeypatch) -> None:
    """Chunks are copy-on-write views of the cache's files: `feed_latency = "zero"` sets the
    exchange times of its own copy of a chunk's rows, and a recorded-latency run after it still
    reads the clamped times the cache was written with."""
    tape = imbalance_tape(tmp_path / "solusdt.gz", seconds=60.0, feed_latency_ms=5.0)
    recorded = _cfg()
    first = run_backtest([tape], strategy="mm", cfg=recorded)  # writes the cache
    folder = cache_dir([tape], recorded.feed.levels, recorded.backtest.chunk_frames)
    before = (folder / "rows.npy").read_bytes()
    rows = np.load(folder / "rows.npy")
    assert (rows["exch_ns"] <= rows["recv_ns"]).all()  # stored clamped
    assert (rows["exch_ns"] < rows["recv_ns"]).any()  # and not all equal: "zero" has work to do
    _no_decoding(monkeypatch)
    zero_cfg = _cfg(feed_latency="zero")
    zero = run_backtest([tape], strategy="mm", cfg=zero_cfg)
    assert (folder / "rows.npy").read_bytes() == before
    assert _facts(run_backtest([tape], strategy="mm", cfg=recorded)) == _facts(first)
    monkeypatch.undo()
    raw_zero = run_backtest([tape], strategy="mm", cfg=_cfg(feed_latency="zero", cache=False))
    assert _facts(zero) == _facts(raw_zero)


def test_a_corrupt_cache_is_reported_and_rebuilt(tape, capsys) -> None:
    cfg = _cfg()
    first = run_backtest([tape], strategy="mm", cfg=cfg)
    folder = cache_dir([tape], cfg.feed.levels, cfg.backtest.chunk_frames)
    rows = folder / "rows.npy"
    rows.write_bytes(rows.read_bytes()[: rows.stat().st_size // 2])  # truncated
    again = run_backtest([tape], strategy="mm", cfg=cfg)
    err = capsys.readouterr().err
    assert f"prepared cache {folder} is unusable" in err and "rebuilding it from the recording" in err
    assert _facts(again) == _facts(first)
    assert (folder / "meta.json").exists() and len(np.load(rows, mmap_mode="r")) == first.events
    (folder / "meta.json").write_text("{not json")
    assert _facts(run_backtest([tape], strategy="mm", cfg=cfg)) == _facts(first)
    assert "unusable" in capsys.readouterr().err


def test_a_changed_recording_gets_a_new_cache_and_an_early_stop_finishes_none(tape) -> None:
    cfg = _cfg()
    end = T0_MS * MS + 30_000 * MS  # --end a quarter of the way in
    short = run_backtest([tape], strategy="mm", cfg=cfg, end_ns=end)
    folder = cache_dir([tape], cfg.feed.levels, cfg.backtest.chunk_frames)
    assert short.end_ns < end and not (folder / "meta.json").exists()
    assert not list(folder.glob("*.npy"))  # only the writers' temporary files were there, and went
    full = run_backtest([tape], strategy="mm", cfg=cfg)
    assert (folder / "meta.json").exists() and full.end_ns > short.end_ns
    # the cache answers --end runs too, with what the recording gives
    assert _facts(run_backtest([tape], strategy="mm", cfg=cfg, end_ns=end)) == _facts(short)
    st = tape.stat()
    os.utime(tape, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed: another key
    assert cache_dir([tape], cfg.feed.levels, cfg.backtest.chunk_frames) != folder


def test_cache_off_neither_reads_nor_writes(tape) -> None:
    cfg = _cfg(cache=False)
    run_backtest([tape], strategy="mm", cfg=cfg)
    assert not (tape.parent / ".hftbot-cache").exists()


def test_caches_unread_for_a_day_are_pruned_when_another_is_finished(tape) -> None:
    import time

    from hftbot.backtest.prepared import STALE_S

    cfg = _cfg()
    run_backtest([tape], strategy="mm", cfg=cfg)
    old = cache_dir([tape], cfg.feed.levels, cfg.backtest.chunk_frames)
    recent = old.parent / "backtest.recently-read"
    recent.mkdir()
    (recent / "meta.json").write_text("{}")
    day_ago = time.time() - STALE_S - 60
    os.utime(old / "meta.json", (day_ago, day_ago))
    run_backtest([tape], strategy="mm", cfg=_cfg(chunk_frames=500))  # another key, finished
    assert not old.exists() and recent.exists()
    assert cache_dir([tape], cfg.feed.levels, 500).exists()


def test_prepare_finishes_the_cache_that_runs_stopping_early_then_read(tape, monkeypatch) -> None:
    from hftbot.backtest.engine import prepare_recording

    cfg = _cfg()
    folder = prepare_recording([tape], cfg)
    assert folder is not None and (folder / "meta.json").exists()
    assert prepare_recording([tape], cfg.override("backtest", cache=False)) is None
    _no_decoding(monkeypatch)  # what the gate does next: runs that stop at the period's end
    end = T0_MS * MS + 60_000 * MS
    r = run_backtest([tape], strategy="mm", cfg=cfg, end_ns=end)
    assert 0 < r.end_ns < end and r.events > 0
    assert prepare_recording([tape], cfg) == folder  # already there: nothing decoded
