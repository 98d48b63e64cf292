"""`python -m hftbot.backtest PATH... [--strategy NAME] [--checkpoint FILE] [--start/--end] [--config FILE]
[--out DIR]`.

One strategy and at most one checkpoint: one run, its report in `<out>/<run>/` (metrics.json,
trades.parquet, PNGs, report.html). Several (`--strategy a,b,...` and/or `--checkpoint` given more
than once): each on the same data, side by side (`hftbot.backtest.compare`; the `imbalance`
baseline is added when missing). `python -m hftbot.backtest walkforward ...` is the walk-forward
(`hftbot.backtest.walkforward`). `--start` / `--end`: ISO-8601 UTC times (`2024-08-08T23:55:00`)
or integer ns since the epoch; the book is built from the data before `--start`, no order is
taken before it. Exit status 0 on success, 2 on bad input (the message says what and where).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hftbot.times import parse_time_ns

BASELINE = "imbalance"
DEFAULT_STRATEGY = "deeplob"  # on checkpoints/CURRENT (runtime.checkpoints_dir) unless --checkpoint


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hftbot.backtest", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", type=Path, help="raw recordings, .gz captures or folders of them")
    p.add_argument("--strategy", default=None,
                   help="strategy name or comma-separated names (deeplob, imbalance, mm); "
                   "default deeplob on checkpoints/CURRENT, or [exec] strategy when a config sets it")
    p.add_argument("--checkpoint", action="append", type=Path, default=[],
                   help="model checkpoint (.json) for deeplob; give several to compare them")
    p.add_argument("--start", default=None, help="first time orders may be taken (ISO-8601 UTC or ns)")
    p.add_argument("--end", default=None, help="end of the replay (exclusive)")
    p.add_argument("--config", type=Path, default=None, help="TOML config over the defaults")
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports/)")
    return p


def runs(strategies: list[str], checkpoints: list[Path]) -> list[tuple[str, Path | None]]:
    """(strategy, checkpoint) per run: deeplob once per checkpoint, the others once."""
    out: list[tuple[str, Path | None]] = []
    for s in strategies:
        if s == "deeplob" and checkpoints:
            out.extend(("deeplob", c) for c in checkpoints)
        else:
            out.append((s, None))
    if checkpoints and "deeplob" not in strategies:
        out.extend(("deeplob", c) for c in checkpoints)
    return out


def default_strategy(cfg) -> str:
    """`[exec] strategy` when a config file or the environment chose it, else deeplob: the
    defaults' live strategy (mm, for the simulator) is not what a model's backtest asks about."""
    from hftbot.config import sources_of

    chosen = sources_of(cfg).get(("exec", "strategy"), "defaults") != "defaults"
    return cfg.exec.strategy if chosen else DEFAULT_STRATEGY


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "walkforward":
        from hftbot.backtest import walkforward

        return int(walkforward.main(argv[1:]) or 0)
    a = parser().parse_args(argv)
    from hftbot.config import ConfigError, load_config

    try:
        cfg = load_config(a.config)
        start_ns = parse_time_ns(a.start, "--start")
        end_ns = parse_time_ns(a.end, "--end")
    except (ConfigError, ValueError, OSError) as e:
        print(f"backtest: {e}", file=sys.stderr)
        return 2
    names = [s.strip() for s in (a.strategy or default_strategy(cfg)).split(",") if s.strip()]
    known = ("deeplob", "imbalance", "mm")
    bad = [s for s in names if s not in known]
    if bad or not names:
        print(f"backtest: --strategy {a.strategy!r}: unknown {bad}; known: {', '.join(known)}", file=sys.stderr)
        return 2
    for c in a.checkpoint:
        if not c.is_file():
            print(f"backtest: --checkpoint {c}: no such file", file=sys.stderr)
            return 2
    for p in a.paths:
        if not p.exists():
            print(f"backtest: {p}: no such file or folder", file=sys.stderr)
            return 2
    if "deeplob" in names and not a.checkpoint:  # the model being served, as the default
        from hftbot.model.checkpoint import CheckpointError, read_pointer

        try:
            current = read_pointer(cfg.runtime.checkpoints_dir)
        except CheckpointError as e:
            print(f"backtest: deeplob: {e}", file=sys.stderr)
            return 2
        if current is None or not current.is_file():
            print(f"backtest: deeplob needs a model: no --checkpoint given and no CURRENT in "
                  f"{cfg.runtime.checkpoints_dir!r} (runtime.checkpoints_dir)", file=sys.stderr)
            return 2
        a.checkpoint = [current]
    plan = runs(names, a.checkpoint)
    compare = len(plan) > 1
    if compare and BASELINE not in [s for s, _ in plan]:
        plan.append((BASELINE, None))  # the baseline every model must beat is always in a comparison

    from hftbot.backtest.engine import run_backtest
    from hftbot.backtest.progress import ProgressBar
    from hftbot.feed.recording import RecordingError

    results = []
    for strategy, ckpt in plan:
        label = strategy if ckpt is None else f"{strategy}:{ckpt.name}"
        with ProgressBar(label, unit="frames") as bar:
            try:
                res = run_backtest(list(a.paths), strategy=strategy, checkpoint=ckpt, cfg=cfg,
                                   start_ns=start_ns, end_ns=end_ns, progress=bar)
            except (RecordingError, ValueError, OSError) as e:
                print(f"\nbacktest: {label}: {e}", file=sys.stderr)
                return 2
        results.append(res)
        for reason, r in res.refusals.items():  # why a run traded less than asked, in the risk manager's words
            print(f"backtest: {label}: the risk manager refused {r['count']:,} intents: {reason} "
                  f"(first: {r['first']})", file=sys.stderr)
    if compare:
        from hftbot.backtest.compare import compare_runs

        where = compare_runs(results, a.out)
    else:
        from hftbot.backtest.metrics import compute_metrics
        from hftbot.backtest.report import write_report

        where = write_report(results[0], a.out)
        m = compute_metrics(results[0])
        print(json.dumps({"run": results[0].name, "report": str(where), "net_pnl": m.get("net_pnl"),
                          "trades": m.get("trades"), "events": results[0].events,
                          "wall_s": round(results[0].settings.get("wall_s", 0.0), 3)}, default=str))
    print(f"report: {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
