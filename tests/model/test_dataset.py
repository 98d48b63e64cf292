"""The trainer's data path: recordings -> cached books (feed code) -> indexed windows -> time split."""

from __future__ import annotations

import os
import shutil
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from hftbot.feed.capture import iter_blocks
from hftbot.feed.core import FeedCore
from hftbot.feed.recording import BookRecordingWriter, read_book
from hftbot.filecache import CACHE_DIR
from hftbot.model import dataset as ds
from hftbot.model.features import FeatureSpec, windows_from_records
from hftbot.model.labels import LabelRule
from hftbot.records import TRADE_DTYPE, book_dtype
from tests.model.simdata import write_sim_raw

SPEC = FeatureSpec(levels=10, window=30)
RULE = LabelRule(horizon=20, threshold_bps=0.5)


def quiet(_: str) -> None:
    pass


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(CACHE_DIR))
    return dst


def feed_core_books(files: list[Path]) -> np.ndarray:
    """What `python -m hftbot.feed check` rebuilds from the same files (one core, in order)."""
    core = FeedCore(levels=10, replay=True)
    out_b, out_t = np.zeros(4096, dtype=book_dtype(10)), np.zeros(4096, dtype=TRADE_DTYPE)
    got = []
    for b in iter_blocks(files):
        i = 0
        while i < len(b):
            i, nb, _ = core.run(b.data, b.starts, b.ends, b.nss, i, len(b), out_b, out_t)
            got.append(out_b[:nb].copy())
    return np.concatenate(got)


def test_raw_recordings_are_rebuilt_by_the_feed_core_and_cached(sim_raw, tmp_path):
    root = copy_tree(sim_raw, tmp_path / "d")
    logs: list[str] = []
    rec = ds.open_recordings([root], log=logs.append)
    files = sorted(root.rglob("raw-*.parquet"))
    assert len(rec.files) == len(files) >= 3 and sum("rebuilt" in m for m in logs) == len(files)
    mine = np.concatenate([np.asarray(f.open()) for f in rec.files])
    ref = feed_core_books(files)
    keep = [n for n in ref.dtype.names if n != "publish_ns"]  # publish_ns is the wall clock of the run
    assert np.array_equal(mine[keep], ref[keep])
    assert all(f.cache.parent.name == CACHE_DIR and f.cache.parent.parent == f.origin.parent for f in rec.files)
    logs.clear()
    again = ds.open_recordings([root], log=logs.append)
    assert logs == [] and [f.cache for f in again.files] == [f.cache for f in rec.files]
    # a changed source invalidates its cache and every later one of its chain, nothing before it
    middle = files[1]
    data = middle.read_bytes()
    middle.write_bytes(data)  # same bytes, new mtime: the key must change
    logs.clear()
    third = ds.open_recordings([root], log=logs.append)
    assert third.files[0].cache == rec.files[0].cache
    assert [m for m in logs if "rebuilt" in m] and not any(str(files[0]) in m for m in logs)
    caches = sorted(middle.parent.joinpath(CACHE_DIR).glob(f"{middle.name}.L10.*.npy"))
    assert len(caches) == 2  # the replaced one stays a day: a trainer started before may still read it
    old = next(c for c in caches if c != third.files[1].cache)
    os.utime(old, (time.time() - 2 * 86400, time.time() - 2 * 86400))
    middle.write_bytes(data)
    ds.open_recordings([root], log=quiet)
    assert not old.exists()  # a day old: deleted at the next rebuild


def test_book_recordings_are_used_as_is_and_win_over_raw_in_their_folder(sim_raw, tmp_path):
    rec = ds.open_recordings([sim_raw], log=quiet)
    books = np.concatenate([np.asarray(f.open()) for f in rec.files])
    root = copy_tree(sim_raw, tmp_path / "rec")  # raw files stay beside the book files
    with BookRecordingWriter(root, "SOLUSDT", levels=10, rotate_s=240.0, source="sim") as w:
        w.append(books)
    got = ds.open_recordings([root], log=quiet)
    assert all(f.origin.name.startswith("book-") for f in got.files)
    assert np.array_equal(np.concatenate([np.asarray(f.open()) for f in got.files]),
                          read_book(sorted(root.rglob("book-*.parquet"))))


def test_a_gz_capture_is_rebuilt_with_its_symbol_from_the_data(tmp_path):
    src = Path(__file__).resolve().parents[1] / "data" / "btcusdt_20240808.gz"
    gz = tmp_path / src.name
    shutil.copy(src, gz)
    rec = ds.open_recordings([tmp_path], log=quiet)
    assert rec.symbol == "BTCUSDT" and rec.n_records > 1000
    assert np.array_equal(np.asarray(rec.files[0].open())["bid_px"], feed_core_books([gz])["bid_px"])


def test_other_parquet_beside_the_recordings_is_not_training_data(sim_raw, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = copy_tree(sim_raw, tmp_path / "data")
    (root / "trades" / "SOLUSDT").mkdir(parents=True)
    pq.write_table(pa.table({"pnl": [1.0]}), root / "trades" / "SOLUSDT" / "trades-2026-01-01.parquet")
    rec = ds.open_recordings([root], log=quiet)
    assert all(f.origin.name.startswith("raw-") for f in rec.files)


def test_one_dataset_is_one_symbol_and_one_source(sim_raw, tmp_path):
    sol = copy_tree(sim_raw, tmp_path / "a")
    btc = write_sim_raw(tmp_path / "b", 60.0, seed=2, symbol="BTCUSDT")
    with pytest.raises(ds.DatasetError, match="one source and one symbol.*BTCUSDT.*SOLUSDT"):
        ds.open_recordings([sol, btc], log=quiet)
    assert ds.open_recordings([sol, btc], symbol="btcusdt", log=quiet).symbol == "BTCUSDT"
    # the layout names the source; two sources never mix
    new = tmp_path / "data" / "recordings"
    shutil.copytree(sim_raw / "sim" / "SOLUSDT", new / "sim" / "SOLUSDT")
    shutil.copytree(sim_raw / "sim" / "SOLUSDT", new / "binance" / "SOLUSDT")
    with pytest.raises(ds.DatasetError, match="source binance.*source sim"):
        ds.open_recordings([new], log=quiet)
    assert ds.open_recordings([new], source="sim", log=quiet).source == "sim"


def test_data_whose_symbol_contradicts_its_folder_is_refused(sim_raw, tmp_path):
    src = next(sim_raw.rglob("raw-*.parquet"))
    dst = tmp_path / "sim" / "BTCUSDT" / "2026-01-01" / src.name
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    with pytest.raises(ds.DatasetError, match="holds SOLUSDT messages, its layout says BTCUSDT"):
        ds.open_recordings([tmp_path], log=quiet)


def test_recordings_given_twice_overlap_and_are_refused(sim_raw, tmp_path):
    a = copy_tree(sim_raw / "sim" / "SOLUSDT", tmp_path / "x" / "SOLUSDT")
    b = copy_tree(sim_raw / "sim" / "SOLUSDT", tmp_path / "y" / "SOLUSDT")
    with pytest.raises(ds.DatasetError, match="overlap in time"):
        ds.open_recordings([a.parent, b.parent], log=quiet)


def test_missing_or_empty_data_is_a_clear_error(tmp_path):
    with pytest.raises(ds.DatasetError, match="does not exist"):
        ds.open_recordings([tmp_path / "nope"], log=quiet)
    with pytest.raises(ds.DatasetError, match="no book-.*recording under"):
        ds.open_recordings([tmp_path], log=quiet)


def test_split_is_chronological_and_the_gap_holds(sim_raw):
    rec = ds.open_recordings([sim_raw], log=quiet)
    parts = ds.chunk_parts(rec, chunk=1500)
    for rule in (RULE, LabelRule(40, 0.5, "next_vs_mid"), LabelRule(45, 0.5, "next_vs_prev")):
        split = ds.split_by_time(rec, parts, SPEC, rule, 0.2, 0.2)
        loaded = {k: [ds.load_part(rec, p, SPEC, rule, rows=False) for p in getattr(split, k)]
                  for k in ("train", "val", "test")}
        for k, ds_ in loaded.items():
            assert sum(len(d.ends) for d in ds_) == split.counts[k] > 0
        for earlier, later in (("train", "val"), ("val", "test")):
            # the records each side reads: windows t-W+1..t, labels t-k+1..t+k (next_vs_prev)
            back = max(SPEC.window - 1, rule.lookback - 1)
            last = max((d.part.file, int(d.ends.max()) + rule.horizon) for d in loaded[earlier] if len(d.ends))
            first = min((d.part.file, int(d.ends.min()) - back) for d in loaded[later] if len(d.ends))
            assert first > last, (rule, earlier, later, first, last)
            t_last = max(int(d.recv_ns.max()) for d in loaded[earlier] if len(d.ends))
            t_first = min(int(d.recv_ns.min()) for d in loaded[later] if len(d.ends))
            assert t_first > t_last
        ends = [set(zip([d.part.file] * len(d.ends), d.ends.tolist(), strict=True))
                for k in loaded for d in loaded[k]]
        assert sum(map(len, ends)) == len(set().union(*ends))  # no window in two periods


def test_windows_are_the_feature_modules_windows(sim_raw):
    rec = ds.open_recordings([sim_raw], log=quiet)
    spec = SPEC.with_stats(np.linspace(-1, 1, 40), np.linspace(0.5, 2, 40))
    recs = np.asarray(rec.files[0].open())
    ref, ref_ends = windows_from_records(recs, spec)
    d = ds.load_part(rec, ds.Part(0, 0, rec.files[0].n), spec, RULE)
    pos = np.searchsorted(ref_ends, d.ends)
    assert np.array_equal(ref_ends[pos], d.ends)  # every labelled window is a complete one
    idx = np.arange(0, len(d.ends), 7)
    assert np.array_equal(d.windows(idx), ref[pos[idx]])  # bit-identical rows: serving == training


def test_memory_stays_within_the_cache_on_a_dataset_larger_than_it(sim_raw):
    rec = ds.open_recordings([sim_raw], log=quiet)
    parts = ds.chunk_parts(rec, chunk=400)
    split = ds.split_by_time(rec, parts, SPEC, RULE, 0.1, 0.1)
    total = sum(ds.part_bytes_estimate(p, SPEC, RULE) for p in split.train)
    budget = 3 * max(ds.part_bytes_estimate(p, SPEC, RULE) for p in split.train)
    assert total > 4 * budget  # the dataset does not fit the cache
    cache = ds.PartCache(lambda p: ds.load_part(rec, p, SPEC, RULE), budget)
    batch = 32
    tracemalloc.start()
    n = 0
    for b in ds.train_batches(split.train, cache, SPEC, RULE, batch, seed=1, epoch=0):
        n += len(b.x)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == split.counts["train"]  # every training window once
    assert cache.peak_bytes <= budget
    assert cache.loads == len(split.train)  # each part loaded once per epoch
    one_batch = batch * SPEC.window * SPEC.n_features * 4
    largest = max(ds.part_bytes_estimate(p, SPEC, RULE) for p in split.train)
    assert peak < budget + 2 * largest + 8 * one_batch, (peak, budget)


def test_every_rank_gets_the_same_number_of_batches_and_its_own_windows(sim_raw):
    rec = ds.open_recordings([sim_raw], log=quiet)
    parts = ds.chunk_parts(rec, chunk=700)
    split = ds.split_by_time(rec, parts, SPEC, RULE, 0.1, 0.1)

    def epoch(rank: int, world: int) -> list[np.ndarray]:
        cache = ds.PartCache(lambda p: ds.load_part(rec, p, SPEC, RULE), 1 << 30)
        return [b.x for b in ds.train_batches(split.train, cache, SPEC, RULE, 16, 4, 0, rank, world)]

    r0, r1, solo = epoch(0, 2), epoch(1, 2), epoch(0, 1)
    assert len(r0) == len(r1) > 0
    key = [x.tobytes() for b in r0 + r1 for x in b]
    assert len(set(key)) == len(key)  # no window on both ranks
    assert set(key) <= {x.tobytes() for b in solo for x in b}
    assert len(key) >= split.counts["train"] - 2 * 16 * 2
