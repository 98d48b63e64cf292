"""`python -m hftbot.bench e2e`: tick-to-order in sim mode, and where the time goes.

The real supervisor runs the default pipeline — simulator, feed, recorder, inference with the
shipped checkpoint, execution with the `deeplob` strategy — for `--seconds` of trading (counted
from the first order). Every figure comes from the records' own timestamps, copied out of the
rings while the run goes on (`hftbot.bench.faultrun.RingWatch`):

    book    recv_ns (frame received) · publish_ns (record in the book ring)
    signal  infer_start_ns (book records read) · infer_end_ns (probabilities) · publish_ns
    order   read_ns (execution read the record behind it) · approve_ns (risk approved) · send_ns

Tick-to-order is `send_ns − book_recv_ns` of every `order.place` / `order.modify`, exactly what
the supervisor's summary reports (`tick_to_order_us`): the top-level `p50`, `p99`, `p99.9` of the
JSON line (µs). Each order is then joined to what caused it and split into stages:

- **signal path** (an entry the model's signal triggered: `signal_seq` > 0; order → its signal →
  that signal's book): feed (receive → book published), ring → inference (published → inference
  read it: the hop, the wakeup and any wait behind the previous update), inference (features +
  model), ring → execution (probabilities → execution read the signal: publish, hop, wakeup),
  strategy + risk (read → approved), send (approved → frame written). The stages add up to the
  chain's tick-to-order (from the book the signal was computed on).
- **book path** (orders a book record triggered: exits at the horizon, stops): feed, ring →
  execution (published → execution read it), strategy + risk, send.

Each stage is reported as p50 / p99 / mean and its share of the mean total. The strategy's
expected move is raised and its horizon cut to one update (`deeplob_move_bps` 2000,
`deeplob_horizon_updates` 1) so that it enters on nearly every signal and exits on the next book:
this measures latency, not profit. `--quick` is a smoke run. Not a test: a loaded machine changes
every figure (the load average before and after is printed with them).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time

import numpy as np

from hftbot.bench.common import cpu_times, latency_run_env, percentiles_us, print_json, print_table, steal_pct
from hftbot.records import ORDER_MODIFY, ORDER_PLACE

FIELDS = {
    "book": ("seq", "recv_ns", "publish_ns", "flags"),
    "signal": ("seq", "book_seq", "book_recv_ns", "model_id", "flags", "infer_start_ns", "infer_end_ns",
               "publish_ns"),
    "order": ("kind", "send_ns", "read_ns", "approve_ns", "book_recv_ns", "signal_seq", "flags", "side", "qty",
              "client_id", "code"),
}
SIGNAL_STAGES = ("feed", "ring_to_inference", "inference", "ring_to_execution", "strategy_risk", "send")
BOOK_STAGES = ("feed", "ring_to_execution", "strategy_risk", "send")
LABELS = {
    "feed": "feed: received -> book published",
    "ring_to_inference": "ring -> inference read it",
    "inference": "inference (features + model)",
    "ring_to_execution": "ring -> execution read it",
    "strategy_risk": "execution: strategy + risk",
    "send": "send: approved -> frame written",
}


def _stage_table(parts: dict[str, np.ndarray], total_ns: np.ndarray) -> dict:
    """{stage: {p50, p99, mean, share}} (µs; share of the mean total) and the total's percentiles."""
    mean_total = float(total_ns.mean()) if len(total_ns) else float("nan")
    out = {}
    for name, v in parts.items():
        p = percentiles_us(v)
        out[name] = {"p50": p["p50"], "p99": p["p99"], "mean": p["mean"],
                     "share": round(float(v.mean()) / mean_total, 4) if len(v) and mean_total > 0 else None}
    return {"n": len(total_ns), "total_us": percentiles_us(total_ns), "stages_us": out}


def breakdown(books: np.ndarray, signals: np.ndarray, orders: np.ndarray) -> dict:
    """Tick-to-order of every place/modify, and its stages per path (pure: arrays in, figures out).

    `books`, `signals`, `orders`: records (or records with at least the fields of `FIELDS`) as
    the rings carried them. An order whose signal or book is not among the records given (the
    ring watcher started later, a record lapped) is left out of its path's breakdown and counted
    in `unmatched`."""
    sent = orders[np.isin(orders["kind"], (ORDER_PLACE, ORDER_MODIFY)) & (orders["book_recv_ns"] > 0)]
    # orders no record triggered (a timer's or a venue answer's: the flatten at the stop, a halt's
    # retry) waited on no tick: left out, as the supervisor's tick_to_order_us leaves them out
    triggered = (sent["read_ns"] > 0) & (sent["approve_ns"] > 0)
    untriggered = int(np.count_nonzero(~triggered))
    sent = sent[triggered]
    t2o = (sent["send_ns"] - sent["book_recv_ns"]).astype(np.int64)
    out: dict = {"tick_to_order_us": percentiles_us(t2o), "unmatched": 0, "untriggered": untriggered}

    book_by_seq = {int(s): i for i, s in enumerate(books["seq"])}
    book_by_recv = {int(r): i for i, r in enumerate(books["recv_ns"])}
    sig_by_seq = {int(s): i for i, s in enumerate(signals["seq"])}

    sig_rows, sig_books, book_rows, book_of_order = [], [], [], []
    same_book = 0
    for i, o in enumerate(sent):
        seq = int(o["signal_seq"])
        if seq:
            j = sig_by_seq.get(seq)
            k = book_by_seq.get(int(signals["book_seq"][j])) if j is not None else None
            if j is None or k is None:
                out["unmatched"] += 1
                continue
            sig_rows.append((i, j))
            sig_books.append(k)
            same_book += int(signals["book_recv_ns"][j] == o["book_recv_ns"])
        else:
            k = book_by_recv.get(int(o["book_recv_ns"]))
            if k is None:
                out["unmatched"] += 1
                continue
            book_rows.append(i)
            book_of_order.append(k)

    if sig_rows:
        oi = np.array([i for i, _ in sig_rows])
        si = np.array([j for _, j in sig_rows])
        bi = np.array(sig_books)
        o, s, b = sent[oi], signals[si], books[bi]
        parts = {
            "feed": b["publish_ns"] - b["recv_ns"],
            "ring_to_inference": s["infer_start_ns"] - b["publish_ns"],
            "inference": s["infer_end_ns"] - s["infer_start_ns"],
            "ring_to_execution": o["read_ns"] - s["infer_end_ns"],
            "strategy_risk": o["approve_ns"] - o["read_ns"],
            "send": o["send_ns"] - o["approve_ns"],
        }
        out["signal_path"] = _stage_table(parts, o["send_ns"] - b["recv_ns"])
        out["signal_path"]["same_book_as_the_order"] = same_book  # orders checked against the signal's own book
    # every signal the model computed, whether or not it led to an order: the first hops
    ok = (signals["model_id"] != 0) & (signals["infer_start_ns"] > 0)
    idx = [(j, book_by_seq.get(int(q))) for j, q in zip(np.flatnonzero(ok), signals["book_seq"][ok], strict=True)]
    idx = [(j, k) for j, k in idx if k is not None]
    if idx:
        s, b = signals[[j for j, _ in idx]], books[[k for _, k in idx]]
        parts = {
            "feed": b["publish_ns"] - b["recv_ns"],
            "ring_to_inference": s["infer_start_ns"] - b["publish_ns"],
            "inference": s["infer_end_ns"] - s["infer_start_ns"],
        }
        out["every_signal"] = _stage_table(parts, s["infer_end_ns"] - b["recv_ns"])
    if book_rows:
        o, b = sent[np.array(book_rows)], books[np.array(book_of_order)]
        parts = {
            "feed": b["publish_ns"] - b["recv_ns"],
            "ring_to_execution": o["read_ns"] - b["publish_ns"],
            "strategy_risk": o["approve_ns"] - o["read_ns"],
            "send": o["send_ns"] - o["approve_ns"],
        }
        out["book_path"] = _stage_table(parts, o["send_ns"] - b["recv_ns"])
    return out


def run_e2e(seconds: float, env: dict[str, str], start_allowance_s: float = 180.0) -> tuple[dict, dict, dict]:
    """The supervised pipeline for `seconds` of trading; (breakdown, summary, records)."""
    from hftbot.bench.faultrun import FaultRun
    from hftbot.config import load_config

    with tempfile.TemporaryDirectory(prefix="hftbot-bench-e2e-") as d:
        base = latency_run_env(d, horizon_updates=1)  # exit on the next book
        cfg = load_config(env={**base, **env})

        policy: dict[str, object] = {}

        def script(run: FaultRun) -> None:
            run.wait(lambda: run.counters("execution").get("orders", 0) > 0, start_allowance_s, "the first order")
            policy.update(execution_policy(run.pid("execution")))
            run.sleep(seconds)

        run = FaultRun(cfg, script, fields=FIELDS)
        with contextlib.redirect_stdout(io.StringIO()):  # the supervisor's own summary: we print ours
            code = run.run()
        if run.error is not None:
            raise SystemExit(f"bench e2e: {run.error}")
        recs = {n: run.watch.records(n) for n in ("book", "signal", "order")}
    out = breakdown(recs["book"], recs["signal"], recs["order"])
    out["exit_code"] = code
    out["execution_policy"] = policy
    return out, run.summary, recs


def execution_policy(pid: int) -> dict[str, object]:
    """How the execution process's main thread is scheduled while it trades ({} when it is gone):
    a run whose figures came without real-time priority (`runtime.realtime`, the OS) says so."""
    from hftbot import linux

    try:
        pol, prio = linux.thread_policy(pid)  # the main thread's native id is the pid
    except OSError:
        return {}
    names = {getattr(os, n): n for n in ("SCHED_OTHER", "SCHED_FIFO", "SCHED_RR", "SCHED_BATCH", "SCHED_IDLE")
             if hasattr(os, n)}
    name = names.get(pol, str(pol))
    return {"policy": name, "priority": prio, "realtime": name in ("SCHED_FIFO", "SCHED_RR")}


def _row(label: str, p: dict) -> tuple:
    f = lambda v: "-" if v is None or v != v else f"{v:.1f}"  # noqa: E731
    share = p.get("share")
    return (label, f(p.get("p50")), f(p.get("p99")), f(p.get("mean")), "" if share is None else f"{100 * share:.1f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench e2e", description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="seconds of trading (start-up not counted)")
    ap.add_argument("--depth-speed", default="", help="feed.depth_speed (default: the config's, 100ms)")
    ap.add_argument("--rate", type=float, default=0.0, help="sim.rate_hz (default: the config's)")
    ap.add_argument("--wait", default="", help="ring.wait (default: the config's, block)")
    ap.add_argument("--quick", action="store_true", help="a short smoke run (rough figures)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seconds = 8.0
    env = {}
    if args.depth_speed:
        env["HFTBOT_FEED__DEPTH_SPEED"] = args.depth_speed
    if args.rate:
        env["HFTBOT_SIM__RATE_HZ"] = str(args.rate)
    if args.wait:
        env["HFTBOT_RING__WAIT"] = args.wait
    load_before = os.getloadavg()[0]
    t0, cpu0 = time.monotonic(), cpu_times()
    out, summary, _ = run_e2e(args.seconds, env)
    load_after, steal = os.getloadavg()[0], steal_pct(cpu0, cpu_times())
    t2o = out["tick_to_order_us"]
    rows = [("tick-to-order (send - book received)", *_row("", {**t2o, "share": None})[1:4], "")]
    for path, stages in (("signal_path", SIGNAL_STAGES), ("book_path", BOOK_STAGES),
                         ("every_signal", SIGNAL_STAGES[:3])):
        p = out.get(path)
        if not p:
            continue
        rows.append((f"{path.replace('_', ' ')} (n={p['n']}): total", *_row("", {**p["total_us"], "share": 1.0})[1:]))
        rows += [_row(f"  {LABELS[k]}", p["stages_us"][k]) for k in stages]
    pol = out.get("execution_policy") or {}
    print_table(
        f"tick-to-order in sim mode (µs), n={t2o['n']}; load average {load_before:.1f} -> {load_after:.1f} on "
        f"{os.cpu_count()} cores; CPU steal {'-' if steal is None else f'{steal:.1f}%'}; "
        f"execution {pol.get('policy', '?')} {pol.get('priority', '')}; targets p50 <= 1000, p99 <= 2000",
        ("stage", "p50", "p99", "mean", "share"),
        rows,
    )
    lat = summary.get("latency_us", {})
    ex = summary.get("execution", {})
    print_json({
        **out,
        "p50": t2o["p50"],
        "p99": t2o["p99"],
        "p99.9": t2o["p99.9"],
        "supervisor_tick_to_order_us": lat.get("tick_to_order_us", {}),  # the system's own monitor, same records
        "tick_to_signal_us": lat.get("tick_to_signal_us", {}),
        "orders": ex.get("orders", 0),
        "fills": ex.get("fills", 0),
        "seconds": args.seconds,
        "wall_s": round(time.monotonic() - t0, 1),
        "config": env,
        "load_avg_1m": [load_before, load_after],
        "steal_pct": steal,  # the hypervisor's share of the machine's CPU time during the run
        "quick": args.quick,
    })
    return 0 if out["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
