"""The whole loop in one supervised sim-mode run: simulator, feed, recorder, inference with the
shipped checkpoint, execution — at an accelerated rate (80 book updates a second), every real
process under the real supervisor, and one script that, in turn:

1. waits for orders placed and filled;
2. drops a new checkpoint into the checkpoints folder (CURRENT flipped): inference hot-reloads it;
3. kill -9 the feed: the supervisor restarts it, it resyncs;
4. kill -9 inference: the supervisor restarts it, signals resume;
5. stops the run (the supervisor's ordered shutdown).

Then one test per promise, all on that run (a module fixture: starting the pipeline costs tens of
seconds, so the assertions share it): orders placed and filled and the ledger equal to the
venue's; recordings readable by pandas; the hot reload missed no update (the signal ring's model
id changes once while every book record gets its signal); no order on the stale book while the
feed was down; nothing opened while inference was down; nothing left in /dev/shm and no process
left behind. Every kill is of this run's own processes, by pid.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hftbot import linux
from hftbot.bench.faultrun import FaultRun
from hftbot.config import load_config
from hftbot.ipc import shm
from hftbot.records import (
    BOOK_VALID,
    ORDER_FILL,
    ORDER_PLACE,
    ORDER_REDUCE_ONLY,
    SIGNAL_NO_MODEL,
    SIGNAL_WARMUP,
)

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(420)

STALE_SIGNAL_MS = 300
FIELDS = {  # what the ring watcher keeps of each record
    "book": ("seq", "recv_ns", "publish_ns", "flags"),
    "signal": ("seq", "book_seq", "model_id", "flags", "publish_ns"),
    "order": ("kind", "send_ns", "read_ns", "book_recv_ns", "signal_seq", "flags", "side", "qty", "client_id",
              "code"),
}


def new_checkpoint(directory: Path) -> int:
    """A second model (small, untrained, a seed of its own) written and CURRENT flipped to it."""
    import json

    import torch

    from hftbot.model.checkpoint import read_pointer, write_checkpoint
    from hftbot.model.deeplob import DeepLOB
    from hftbot.model.features import FeatureSpec

    torch.manual_seed(7)
    model = DeepLOB(levels=10, window=30, conv_filters=4, inception_filters=8, padding="valid")
    write_checkpoint(model, FeatureSpec(levels=10, window=30), directory, trained=False, note="full loop", seed=7)
    return int(json.loads(read_pointer(directory).read_text())["model_id"])


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    d = tmp_path_factory.mktemp("full-loop")
    ckpt = d / "checkpoints"
    shutil.copytree(ROOT / "checkpoints", ckpt, ignore=shutil.ignore_patterns(".verified"))
    env = {
        "HFTBOT_RUNTIME__DATA_DIR": str(d / "data"),
        "HFTBOT_RUNTIME__CHECKPOINTS_DIR": str(ckpt),
        "HFTBOT_RUNTIME__LOG_LEVEL": "WARNING",
        "HFTBOT_RUNTIME__HEARTBEAT_S": "0.2",
        "HFTBOT_RUNTIME__HEARTBEAT_TIMEOUT_S": "30",  # loading torch and the model on a loaded machine
        "HFTBOT_RUNTIME__START_TIMEOUT_S": "180",
        "HFTBOT_RUNTIME__RESTART_BACKOFF_S": "0.5",
        "HFTBOT_RUNTIME__STOP_TIMEOUT_S": "10",
        "HFTBOT_SIM__RATE_HZ": "80",  # accelerated: twice the default market's event rate ...
        "HFTBOT_FEED__DEPTH_SPEED": "0ms",  # ... and every event a book update (~80/s, not 10/s)
        "HFTBOT_RECORDER__FLUSH_S": "0.5",
        "HFTBOT_INFERENCE__POLL_INTERVAL_S": "0.1",
        "HFTBOT_EXEC__STRATEGY": "deeplob",  # it acts on signals: the inference kill means something
        "HFTBOT_EXEC__STYLE": "taker",
        "HFTBOT_STRATEGY__DEEPLOB_QTY": "0.1",
        "HFTBOT_STRATEGY__DEEPLOB_MOVE_BPS": "2000",  # trades on most signals: this tests plumbing
        "HFTBOT_STRATEGY__DEEPLOB_HORIZON_UPDATES": "80",  # ~1 s: positions turn over, an exit outlasts a kill
        "HFTBOT_RISK__STALE_SIGNAL_MS": str(STALE_SIGNAL_MS),
        "HFTBOT_GATEWAY__RECONNECT_BACKOFF_S": "0.2",
        "HFTBOT_FEED__BACKOFF_MIN_S": "0.05",
        "HFTBOT_FEED__BACKOFF_MAX_S": "0.5",
    }
    cfg = load_config(env=env)

    def script(run: FaultRun) -> None:
        ex = lambda k: run.counters("execution").get(k, 0)  # noqa: E731
        run.wait(lambda: ex("fills") >= 2, 240, "the first fills")
        run.notes["policies"] = {n: (run.pid(n), linux.task_policies(run.pid(n)))
                                 for n in ("sim", "feed", "recorder", "inference", "execution")}
        # -- a new checkpoint mid-run
        # (the counters are published with the heartbeat: wait until they name the served model)
        run.wait(lambda: run.counters("inference").get("model_id", 0) != 0, 60, "the served model's id")
        old_id = run.counters("inference")["model_id"]
        run.notes["swap_at"] = time.time_ns()
        run.notes["old_id"], run.notes["new_id"] = old_id, new_checkpoint(ckpt)
        run.wait(lambda: run.counters("inference")["model_id"] == run.notes["new_id"], 120, "the hot reload")
        run.wait(lambda: ex("orders") >= 4, 60, "orders on the new model")
        run.sleep(1.0)
        # -- kill -9 of the feed
        _, run.notes["feed_killed"] = run.kill_feed_until_trading(90)
        # -- kill -9 of inference, right after a position opened (its exit is due without the model)
        def just_opened() -> bool:
            pos, last = run.fills_before(time.time_ns())
            return pos != 0 and time.time_ns() - last < 150_000_000

        run.wait(just_opened, 120, "a position just opened")
        pid, t = run.kill("inference")
        run.notes["inference_killed"] = t
        run.notes["position_at_kill"] = run.fills_before(t)[0]
        run.wait(lambda: run.pid("inference") not in (0, pid) and run.first_signal_after(t), 180, "fresh signals")
        run.wait(lambda: len(run.orders_between(run.first_signal_after(t), time.time_ns(),
                                                kinds=(ORDER_PLACE,))) >= 1, 60, "orders on fresh signals")
        run.sleep(0.5)

    run = FaultRun(cfg, script, fields=FIELDS)
    run.exit_code = run.run()
    run.data_dir = d / "data"
    run.test_pid = os.getpid()
    yield run


def test_the_run_ended_cleanly_and_the_ledger_equals_the_venue(loop) -> None:
    assert loop.error is None, repr(loop.error)
    assert loop.exit_code == 0, loop.summary["failures"]
    s = loop.summary
    ex, sim = s["execution"], s["processes"]["sim"]
    assert ex["orders"] >= 4 and ex["fills"] >= 2 and sim["orders"] >= ex["orders"]
    assert ex["position_lots"] == ex["venue_position_lots"] == sim["position_lots"] == 0  # flattened at stop
    assert ex["open_orders"] == 0 == sim["open_orders"] and sim["duplicate_ids"] == 0
    ids = loop.placed_client_ids()
    assert len(ids) == len(set(ids))
    assert s["processes"]["feed"]["restarts"] == 1 and s["processes"]["inference"]["restarts"] == 1
    lat = s["latency_us"]["tick_to_order_us"]
    assert lat["n"] >= 4 and 0 < lat["p50"] <= lat["p99"] <= lat["p99.9"]  # measured by the system itself


def test_recordings_are_readable_by_pandas(loop) -> None:
    base = loop.data_dir / "recordings" / "sim" / "SOLUSDT"
    books = sorted(glob.glob(str(base / "*" / "book-*.parquet")))
    orders = sorted(glob.glob(str(base / "*" / "orders-*.parquet")))
    raw = sorted(glob.glob(str(base / "*" / "raw-*.parquet")))
    assert books and orders and raw
    b = pd.concat(pd.read_parquet(f) for f in books)
    assert len(b) > 500 and {"recv_ns", "publish_ns", "bid_px_0", "ask_px_0", "bid_qty_9"} <= set(b.columns)
    assert b["publish_ns"].is_unique  # the restarted feed's records follow, none written twice
    valid = b[(b["flags"] & BOOK_VALID) != 0]
    assert (valid["bid_px_0"] < valid["ask_px_0"]).all()
    o = pd.concat(pd.read_parquet(f) for f in orders)
    assert (o["kind"] == ORDER_PLACE).sum() >= 4 and (o["kind"] == ORDER_FILL).sum() >= 2
    r = pd.concat(pd.read_parquet(f) for f in raw)
    assert len(r) > len(b) / 2  # depth, tickers and trades as received


def test_the_hot_reload_missed_no_update(loop) -> None:
    sig = loop.watch.records("signal")
    old, new = loop.notes["old_id"], loop.notes["new_id"]
    assert old != new and old != 0
    killed = loop.notes["inference_killed"]
    first = sig[(sig["publish_ns"] < killed) & (sig["model_id"] != 0)]  # the first inference process
    ids = first["model_id"]
    changes = np.flatnonzero(ids[1:] != ids[:-1])
    assert len(changes) == 1 and ids[changes[0]] == old and ids[changes[0] + 1] == new  # swapped once
    # around the swap (2 s either way; the feed was up): signals on ever newer books, never a stale
    # one, and the new model's first signal is not a warm-up: it was primed with every record
    i = changes[0] + 1
    t_swap = int(first["publish_ns"][i])
    near = first[(first["publish_ns"] > t_swap - 2_000_000_000) & (first["publish_ns"] < t_swap + 2_000_000_000)]
    steps = np.diff(near["book_seq"])
    assert len(near) > 50 and np.all(steps >= 1)
    assert (first["flags"][i] & SIGNAL_WARMUP) == 0 and (first["flags"][i:] & SIGNAL_NO_MODEL).sum() == 0
    # a signal for the newest book only when behind (`skipped`), but the model saw them all
    assert first["book_seq"][i] - first["book_seq"][i - 1] <= max(8, int(steps.max()))  # no stall at the swap
    inf = loop.summary["processes"]["inference"]
    assert inf["lost"] == 0 and inf["gaps"] == 0 and inf["swaps"] >= 1
    books = loop.watch.records("book")
    assert np.all(np.diff(books["seq"]) == 1)  # the watcher saw every book record, gapless


def test_no_order_on_the_stale_book_while_the_feed_was_down(loop) -> None:
    t_kill = loop.notes["feed_killed"]
    t_valid = loop.first_book_after(t_kill)
    assert t_valid > t_kill
    assert len(loop.orders_between(t_kill, t_valid)) == 0
    books = loop.watch.records("book")
    valid = set(books["recv_ns"][(books["flags"] & BOOK_VALID) != 0].tolist())
    after = loop.orders_between(t_valid - 1, loop.notes["inference_killed"])
    assert len(after) and set(after["book_recv_ns"].tolist()) <= valid  # each on a book of the new feed
    assert after["book_recv_ns"].min() >= t_valid


def test_nothing_opened_while_inference_was_down(loop) -> None:
    t_kill = loop.notes["inference_killed"]
    t_fresh = loop.first_signal_after(t_kill)
    assert t_fresh > t_kill
    window = loop.orders_between(t_kill, t_fresh, kinds=(ORDER_PLACE,))
    reduce_only = (window["flags"] & ORDER_REDUCE_ONLY) != 0
    assert loop.notes["position_at_kill"] != 0 and reduce_only.any()  # the exit went on without the model
    late = window[window["send_ns"] > t_kill + STALE_SIGNAL_MS * 1_000_000]
    assert np.all((late["flags"] & ORDER_REDUCE_ONLY) != 0)  # nothing opened once the signal went stale
    faults = loop.summary["execution"]["faults"]
    assert faults["stale_signal"]["count"] >= 1 and faults["stale_signal"]["recovered"] >= 1


def test_executions_main_thread_runs_real_time_where_permitted(loop) -> None:
    """SCHED_FIFO for execution's main thread, where this machine lets a process ask (it does for
    root); every other thread and process normal. Where it does not, everything normal: the run
    is the same, only slower."""
    probe = subprocess.run([sys.executable, "-c", "from hftbot import linux; print(linux.set_realtime(1))"],
                           capture_output=True, text=True, check=True)
    permitted = probe.stdout.strip() == ""
    want_main = {"execution": 1} if permitted else {}
    for name, (pid, threads) in loop.notes["policies"].items():
        assert pid in threads, (name, threads)
        for tid, (policy, prio) in threads.items():
            if tid == pid and name in want_main:
                assert (policy, prio) == (os.SCHED_FIFO, want_main[name]), (name, policy, prio)
            else:
                assert (policy, prio) == (os.SCHED_OTHER, 0), (name, tid, policy, prio)
    assert len(loop.notes["policies"]["execution"][1]) > 1  # the gateway's threads were checked too


def test_nothing_left_in_dev_shm_and_no_process_left_behind(loop) -> None:
    assert shm.list_segments(loop.test_pid) == []
    pids = [p for proc in loop.summary["processes"].values() for p in proc["pids"]]
    assert len(pids) == 7  # five processes, two of them restarted once
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not [p for p in pids if _alive(p)]
    names = [_name(p) for p in linux.children(loop.test_pid)]
    assert not [n for n in names if n.startswith("hftbot")], names


def _alive(pid: int) -> bool:
    """Running or a zombie nobody reaped (a reaped pid has no /proc entry, or another process's)."""
    return linux.pid_state(pid) is not None and _name(pid).startswith("hftbot")


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""

