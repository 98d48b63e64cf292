"""`python -m hftbot.bench inference`: per-update model latency on one CPU thread, batch throughput.

Rows (every latency is one book update, measured with perf_counter_ns around the call):
- `full eager torch`     : DeepLOB.forward on the whole window, eager PyTorch (the baseline);
- `full torchscript`     : the same through the TorchScript checkpoint module;
- `full numba`           : the numba forward over the whole window, no caches;
- `stream <padding>`     : what the inference process runs per update: features for the new book
                           record, one conv step, the LSTM over the cached projections, softmax;
- `loop, ...`            : the inference loop's order, with up to `--idle-us` of idle time between
                           updates (in which a loaded model is primed, as when the ring read would
                           wait) and the pointer polled. Phases of `--phase` updates alternate:
                           a swap phase flips the pointer at its start (load and verify in the
                           background, prime in idle time, swap between two updates), a quiet
                           phase does not. `quiet phases` (no load, nothing pending) is the
                           control; `swap phases` the updates while a swap is under way; `the
                           installing update` the one right after each swap (a pointer swap).
                           Interleaving puts control and swaps under the same machine state;
                           updates after idle time run from a colder cache than back-to-back ones;
- `installing, no idle`  : the same with no idle time at all: a loaded model waits `max_defer`
                           updates, then the swap primes and catches it up itself inside one
                           update (the fallback under saturation: W + 24 rows, ~10-15 ms);
- `batch torchscript`    : windows/s of a batched TorchScript forward (training/offline scoring).

Book records are a synthetic random walk (nothing to download). Prints a table, then one JSON line.
This module only measures; it never writes outside a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from hftbot.bench.common import percentiles_us, print_json
from hftbot.records import BOOK_VALID, book_dtype


def synthetic_books(n: int, levels: int = 10, seed: int = 0) -> np.ndarray:
    """A random-walk book: tick 0.01, lot 0.01, spread 1-3 ticks, sizes log-normal."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=book_dtype(levels))
    mid = 15000 + np.cumsum(rng.integers(-1, 2, n))
    spread = rng.integers(1, 4, n)
    steps = np.arange(levels)
    out["bid_px"] = (mid - spread // 2)[:, None] - steps
    out["ask_px"] = (mid - spread // 2 + spread)[:, None] + steps
    out["bid_qty"] = rng.lognormal(5, 1, (n, levels)).astype(np.int64) + 1
    out["ask_qty"] = rng.lognormal(5, 1, (n, levels)).astype(np.int64) + 1
    out["tick"], out["lot"], out["flags"] = 0.01, 0.01, BOOK_VALID
    out["seq"] = np.arange(1, n + 1)
    out["recv_ns"] = time.time_ns() + np.arange(n) * 1_000_000
    return out


def _time_calls(fn, n: int, warm: int = 20) -> dict[str, float]:
    for _ in range(warm):
        fn()
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        t = time.perf_counter_ns()
        fn()
        out[i] = time.perf_counter_ns() - t
    return percentiles_us(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.bench inference", description=__doc__.split("\n")[0])
    ap.add_argument("--updates", type=int, default=3000, help="timed updates per streaming row")
    ap.add_argument("--full-updates", type=int, default=300, help="timed calls per full-window row")
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--filters", type=int, nargs=2, default=(16, 32), metavar=("CONV", "INCEPTION"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--phase", type=int, default=200,
                    help="updates per phase in the swap rows: a swap phase (pointer flipped at its start) "
                         "alternates with a quiet one (the control)")
    ap.add_argument("--swaps", type=int, default=10, help="swap phases in the swap rows")
    ap.add_argument("--idle-us", type=float, default=1000.0,
                    help="idle time between updates in the swap row, spent spinning like a ring read "
                         "(a book at <= 1 kHz leaves at least this much); 0: back to back")
    a = ap.parse_args(argv)

    import torch

    from hftbot.model.checkpoint import Compat, load_checkpoint, set_current, write_checkpoint
    from hftbot.model.deeplob import DeepLOB
    from hftbot.model.engine import InferenceEngine, ModelRuntime, ModelWatcher
    from hftbot.model.features import FeatureSpec
    from hftbot.model.streaming import warm_up
    from hftbot.process import short_gil_slices

    torch.set_num_threads(1)
    short_gil_slices()  # as the inference process does
    warm_up()
    levels, w = 10, a.window
    books = synthetic_books(max(a.updates + a.window + 200, 2 * a.phase * a.swaps), levels)
    spec = FeatureSpec(levels=levels, window=w)
    rows: list[tuple[str, str, dict]] = []  # (table label, JSON key, latency)
    figures: dict[str, object] = {"window": w, "filters": list(a.filters), "threads": 1}

    with tempfile.TemporaryDirectory(prefix="hftbot-bench-") as tmp:
        ck = {}
        for padding in ("valid", "causal"):
            torch.manual_seed(0)
            m = DeepLOB(levels, w, a.filters[0], a.filters[1], padding=padding).eval()
            ck[padding] = load_checkpoint(
                write_checkpoint(m, spec, tmp, trained=False, flip=False), Compat(levels)
            )
        figures["parameters"] = ck["valid"].meta["architecture"]["parameters"]
        x = torch.randn(1, w, 4 * levels)
        eager = ck["valid"].arch.build()
        eager.load_state_dict({k: torch.from_numpy(v) for k, v in ck["valid"].state.items()})
        eager.eval()
        with torch.inference_mode():
            rows.append(("full eager torch (valid)", "full_eager", _time_calls(lambda: eager(x), a.full_updates)))
            rows.append(
                (
                    "full torchscript (valid)",
                    "full_torchscript",
                    _time_calls(lambda: ck["valid"].script(x), a.full_updates),
                )
            )
        win = x[0].numpy()
        rt = ck["valid"].runtime()
        rows.append(("full numba (valid)", "full_numba", _time_calls(lambda: rt.full_logits(win), a.full_updates)))

        def stream(c) -> dict:
            r = ModelRuntime(c)
            for rec in books[: w + 30]:
                r.push(rec)
            it = iter(books[w + 30 :])

            def step():
                r.push(next(it))
                r.probabilities()

            return _time_calls(step, a.updates, warm=0)

        for padding in ("valid", "causal"):
            rows.append((f"stream {padding}", f"stream_{padding}", stream(ck[padding])))

        # hot swap: background loads of alternating checkpoints, swapped between updates
        d = Path(tmp) / "swap"
        metas = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            m = DeepLOB(levels, w, a.filters[0], a.filters[1], padding="valid").eval()
            metas.append(write_checkpoint(m, spec, d, trained=False, flip=False, seed=seed))

        def swapping(idle_us: float) -> tuple[dict, dict, dict, InferenceEngine]:
            """The loop's order: take a load, swap if ready, update; between updates up to
            `idle_us` of idle time in which a pending model is primed (as when the ring read waits).

            Phases of `--phase` updates alternate: a swap phase starts with a pointer flip (load,
            verify, prime, install), a quiet phase has none. Quiet updates - no load, no pending
            model - are the control; being interleaved with the swaps every fraction of a second,
            they share the machine's state (other tenants, clock) with them."""
            set_current(d, metas[0].name)
            eng = InferenceEngine(levels, max_window=max(w, 200))
            watcher = ModelWatcher(d, Compat(levels), eng.history, poll_interval_s=0.001,
                                   verify_in_process=True, cold_start_in_process=False)  # a warm helper
            watcher.poll(0.0)
            watcher.wait_idle(60)
            eng.install(watcher.take())
            quiet, loading, installing, k = [], [], [], 0
            for i, rec in enumerate(books[: 2 * a.phase * a.swaps]):
                swap_phase = (i // a.phase) % 2 == 1
                if swap_phase and i % a.phase == 0:
                    k += 1
                    set_current(d, metas[k % 2].name)
                end = time.perf_counter_ns() + idle_us * 1000
                while time.perf_counter_ns() < end:  # idle (a spinning ring read): not timed
                    eng.idle_step()
                # The pointer check is not timed: the bench reads it every millisecond so swaps
                # come often; the live loop reads it every `poll_interval_s` (0.5 s).
                watcher.poll()
                busy = watcher._thread is not None or eng.pending is not None
                t = time.perf_counter_ns()
                p = watcher.take()
                if p is not None:
                    eng.offer(p)
                installed = eng.install_ready()
                eng.push(rec)
                if eng.due():
                    eng.signal(rec, 0)
                dt = time.perf_counter_ns() - t
                if installed is not None:
                    installing.append(dt)
                elif busy or swap_phase:
                    loading.append(dt)
                else:
                    quiet.append(dt)
            watcher.close()
            return percentiles_us(quiet), percentiles_us(loading), percentiles_us(installing), eng

        base = next(r for _, key, r in rows if key == "stream_valid")
        control, during, swaps, eng = swapping(a.idle_us)
        rows.append(("loop, quiet phases (control)", "loop_quiet", control))
        rows.append(("loop, swap phases", "loop_swap_phases", during))
        rows.append(("  the installing update", "loop_installing_update", swaps))
        figures["swaps_forced"] = eng.forced
        figures["swap_records_fed_at_install"] = eng.install_fed
        _, _, busy, eng0 = swapping(0.0)
        rows.append(("  installing, no idle (forced)", "installing_no_idle", busy))
        figures["no_idle_swaps_forced"] = eng0.forced

        xb = torch.randn(a.batch, w, 4 * levels)
        with torch.inference_mode():
            bt = _time_calls(lambda: ck["valid"].script(xb), 10, warm=2)
        wps = a.batch / (bt["p50"] / 1e6)

    print(
        f"{'path (one CPU thread, per update)':<34}{'p50 µs':>10}{'p99 µs':>10}{'p99.9 µs':>10}{'max µs':>10}{'n':>7}"
    )
    for name, _, r in rows:
        print(f"{name:<34}{r['p50']:>10.1f}{r['p99']:>10.1f}{r['p99.9']:>10.1f}{r['max']:>10.1f}{r['n']:>7}")
    print(f"{'batch torchscript':<34}{wps:>10.0f} windows/s (batch {a.batch})")
    print(
        f"swaps installed: {swaps['n']}; targets: stream p50 <= 400 µs, p99 <= 1000 µs; the installing "
        f"update <= p99 of the quiet phases ({control['p99']:.0f} µs; back to back "
        f"{base['p99']:.0f} µs; swap phases {during['p99']:.0f} µs)"
    )
    figures["bench"] = "inference"
    figures["latency_us"] = {key: r for _, key, r in rows}  # per row: p50/p99/p99.9/max/mean, n
    figures["batch_windows_per_s"] = round(wps, 1)
    # the target: a swap adds no update latency above p99. Like for like: the same loop (idle time
    # between updates, pointer polling) in its quiet phases, interleaved with the swap phases.
    # Back-to-back updates keep weights in L1/L2 and are faster than any update after idle time.
    figures["swap_update_le_control_p99"] = bool(swaps["max"] <= control["p99"])
    figures["swap_phase_p99_le_control_p99"] = bool(during["p99"] <= control["p99"])
    figures["swap_update_le_stream_p99"] = bool(swaps["max"] <= base["p99"])
    figures["swap_update_le_swap_row_p99"] = bool(swaps["max"] <= during["p99"])
    figures["stream_valid_meets_targets"] = bool(base["p50"] <= 400 and base["p99"] <= 1000)
    print_json(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
