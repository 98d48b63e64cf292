"""Walk-forward: train on the past, trade the next stretch, roll forward, repeat.

    python -m hftbot.backtest walkforward PATH... [--train 6h] [--test 1h] [--step 1h] [--anchored]
        [--strategy deeplob] [--config FILE] [--out reports/] [--no-baseline] [-- TRAINER FLAGS...]

Windows (`windows()`, pure): window k trains on [start + k·step, start + k·step + train) of the
data's receive times (`--anchored`: always from the data's start, a growing window) and is tested
on the `test` that follows; windows are made while the test fits in the data. `step` must be at
least `test`, so no stretch is tested twice and the overall figures count every moment once.
Durations are hours when a bare number (`--train 6`), or `90s`, `30m`, `6h`, `1d`.

Training is the trainer's own code, nothing else: `training/train.py`'s `parse_args`,
`model_settings` and `train` run in this process (one torch import for all windows) with
`--data PATH... --data-start/--data-end <the window's train range> --no-promote` and the flags
given after `--` (e.g. `-- --epochs 3 --window 50`), into `<run>/models/`. `--data-end` cuts the
trainer's records (`hftbot.model.dataset.Recordings.between`), so its windows, labels,
normalisation and its own validation/test split all come from before the test stretch: the model
never sees a record at or after the time it is tested from. `--config` is the one config for both
sides: its `[model]` for the trainer, `[exec]`, `[strategy]`, `[risk]`, `[backtest]` for the replay.

Testing: `engine.run_backtest(paths, strategy=..., checkpoint=<that window's model>,
start_ns, end_ns)` (the book is built from the data before the window; orders only inside it),
and the same window with the `imbalance` baseline (`--no-baseline` skips it). Each test window
starts flat; what the replay does after `end_ns` is cut off (`clip`): a position still open at the
window's end is marked at the mid there, not closed. The overall run (`chain`) joins the windows'
equity curves end to end (each window's net PnL added to the previous windows'), their fills,
trades and signals, and `compute_metrics` reads it like any run.

Writes `<out>/walkforward-<UTC start of the first test>/`: `walkforward.json` (the windows, each
one's train range, checkpoint and the data its metadata says it was trained on, per-window and
overall metrics of the model and the baseline), `walkforward.html` (one self-contained page:
table, chained equity of both with the window boundaries, a verdict), `models/`, `runs/`
(TensorBoard), `windows/wNN[-imbalance]/` and `overall[-imbalance]/` reports.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import importlib.util
import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from hftbot.atomic import write_bytes_atomic
from hftbot.backtest.metrics import compute_metrics, json_ready
from hftbot.backtest.report import CSS, fmt, fresh_dir, img_tag, iso_ns, new_figure, png_bytes, write_report
from hftbot.backtest.result import BacktestResult
from hftbot.bench.common import print_table

BASELINE = "imbalance"
HOUR_NS = 3600 * 10**9
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "training" / "train.py"


@dataclasses.dataclass(frozen=True)
class Window:
    index: int
    train_start_ns: int
    train_end_ns: int  # exclusive; the trainer reads only records received before it
    test_start_ns: int
    test_end_ns: int  # exclusive

    def to_dict(self) -> dict:
        return {"index": self.index, **{k: v for k, v in dataclasses.asdict(self).items() if k != "index"},
                "train": f"{iso_ns(self.train_start_ns)} .. {iso_ns(self.train_end_ns)}",
                "test": f"{iso_ns(self.test_start_ns)} .. {iso_ns(self.test_end_ns)}"}


def parse_duration_ns(text: str, what: str) -> int:
    """'6' (hours), '90s', '30m', '6h', '1d' → ns (> 0)."""
    m = _DURATION.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"walkforward: {what} must be a positive duration like 6 (hours), 6h, 30m, 90s or 1d, "
                         f"got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2) or "h"] * 10**9)


def windows(data_start_ns: int, data_end_ns: int, train_ns: int, test_ns: int, step_ns: int,
            anchored: bool = False) -> list[Window]:
    """The train/test windows over [data_start_ns, data_end_ns] (see the module docstring)."""
    if min(train_ns, test_ns, step_ns) <= 0:
        raise ValueError(f"walkforward: train, test and step must be > 0, got {train_ns}, {test_ns}, {step_ns} ns")
    if step_ns < test_ns:
        raise ValueError(f"walkforward: step ({step_ns / 1e9:g} s) must be >= test ({test_ns / 1e9:g} s): "
                         f"overlapping test windows would count the same stretch twice")
    out: list[Window] = []
    k = 0
    while True:
        train_end = data_start_ns + train_ns + k * step_ns
        test_end = train_end + test_ns
        if test_end > data_end_ns:
            break
        out.append(Window(k + 1, data_start_ns if anchored else data_start_ns + k * step_ns, train_end,
                          train_end, test_end))
        k += 1
    if not out:
        raise ValueError(f"walkforward: the data ({iso_ns(data_start_ns)} .. {iso_ns(data_end_ns)}, "
                         f"{(data_end_ns - data_start_ns) / 1e9:g} s) is shorter than one train + test "
                         f"({(train_ns + test_ns) / 1e9:g} s)")
    return out


# ------------------------------------------------------------------------------------ results


def clip(result: BacktestResult, start_ns: int, end_ns: int) -> BacktestResult:
    """The part of a run inside [start_ns, end_ns): equity samples, fills, signals and trades that
    closed in it; the run's span set to the window."""
    eq, f, s = result.equity, result.fills, result.signals
    end_ms = end_ns // 10**6
    return dataclasses.replace(
        result, start_ns=start_ns, end_ns=end_ns,
        equity=eq[(eq["t_ns"] >= start_ns) & (eq["t_ns"] < end_ns)],
        fills=f[(f["t_ns"] >= start_ns) & (f["t_ns"] < end_ns)],
        signals=s[(s["t_ns"] >= start_ns) & (s["t_ns"] < end_ns)],
        trades=[t for t in result.trades if t.exit_ms < end_ms and t.exit_ms * 10**6 >= start_ns],
        settings=dict(result.settings))


def chain(results: list[BacktestResult], name: str) -> BacktestResult:
    """Consecutive test windows as one run: equity (realised, fees, equity) offset by the windows
    before, fills, trades and signals joined, counts added."""
    if not results:
        raise ValueError("walkforward: no window to chain")
    eqs = []
    off_real = off_fees = off_eq = 0.0
    for r in results:
        e = r.equity.copy()
        e["realised"] += off_real
        e["fees"] += off_fees
        e["equity"] += off_eq
        eqs.append(e)
        if len(r.equity):
            off_real, off_fees, off_eq = float(e["realised"][-1]), float(e["fees"][-1]), float(e["equity"][-1])
    first = results[0]
    return dataclasses.replace(
        first, name=name, start_ns=first.start_ns, end_ns=results[-1].end_ns,
        equity=np.concatenate(eqs), fills=np.concatenate([r.fills for r in results]),
        signals=np.concatenate([r.signals for r in results]),
        trades=[t for r in results for t in r.trades],
        events=sum(r.events for r in results), orders=sum(r.orders for r in results),
        rejected=sum(r.rejected for r in results),
        settings={"windows": len(results), **{k: v for k, v in first.settings.items() if k != "checkpoint"}})


# ------------------------------------------------------------------------------------ training


def train_script():
    """training/train.py as a module (its own `parse_args`, `model_settings`, `train`)."""
    if not TRAIN_SCRIPT.is_file():
        raise FileNotFoundError(f"walkforward: the trainer {TRAIN_SCRIPT} is not there (run from a checkout)")
    spec = importlib.util.spec_from_file_location("hftbot_training_train", TRAIN_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def trainer_argv(paths: list[Path], w: Window, folder: Path, config: Path | None, extra: list[str]) -> list[str]:
    return ["--data", *map(str, paths), "--data-start", str(w.train_start_ns), "--data-end", str(w.train_end_ns),
            "--out", str(folder / "models"), "--logdir", str(folder / "runs"), "--run-name", f"w{w.index:02d}",
            "--no-promote", *(["--config", str(config)] if config else []), *extra]


def train_window(mod, argv: list[str]) -> Path:
    """One ordinary training run; the checkpoint it wrote. The trainer registers the gate's net-PnL
    scorer for its data (a module-level table); it is restored afterwards, so running the trainer
    in this process leaves the gate as it found it."""
    from hftbot.model import gate

    saved = dict(gate.SCORERS)
    try:
        a = mod.parse_args(argv)
        m, cfg = mod.model_settings(a)
        res = mod.train(a, m, cfg)
    finally:
        gate.SCORERS.clear()
        gate.SCORERS.update(saved)
    if "checkpoint" not in res:
        raise RuntimeError(f"walkforward: the trainer wrote no checkpoint (result {res})")
    return Path(res["checkpoint"])


# ------------------------------------------------------------------------------------ output

ROW = (("net", "net_pnl"), ("trades", "trades"), ("win%", "win_rate"), ("sharpe", "sharpe_annual"),
       ("maxdd", "max_drawdown"), ("fees", "fees"), ("f1", None))


def _cell(key: str | None, m: dict) -> str:
    v = m.get("signal", {}).get("macro_f1") if key is None else m.get(key)
    if v is None:
        return "-"
    if key == "win_rate":
        return f"{v * 100:.1f}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def plot_chained(model: BacktestResult, base: BacktestResult | None, wins: list[Window]) -> bytes:
    from hftbot.backtest.report import as_datetimes, downsample

    fig, (ax,) = new_figure(1, height=4.5)
    for r, ls in ((model, "-"), (base, "--")):
        if r is None or not len(r.equity):
            continue
        i = downsample(len(r.equity), r.equity["equity"])
        ax.plot(as_datetimes(r.equity["t_ns"][i]), r.equity["equity"][i], ls=ls, lw=1.2, label=r.name)
    for w in wins:
        ax.axvline(as_datetimes(np.array([w.test_start_ns]))[0], color="gray", lw=0.6, ls=":")
    ax.axhline(0, color="black", lw=0.5)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left")
    ax.set_title("walk-forward: net equity over the test windows, chained (dotted: window starts)")
    return png_bytes(fig)


def verdict(model: dict, base: dict | None) -> str:
    if base is None:
        return f"{model['name']}: net {model['net_pnl']:.6g} USDT over the test windows (no baseline run)"
    d = model["net_pnl"] - base["net_pnl"]
    if d > 0:
        return f"{model['name']} beats the {BASELINE} baseline by {d:.6g} USDT net over the test windows"
    return (f"{model['name']} does NOT beat the {BASELINE} baseline over the test windows "
            f"({model['net_pnl']:.6g} against {base['net_pnl']:.6g} USDT net)")


def page(doc: dict, png: bytes) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("window", "train", "test", "checkpoint", "trained on (data end)",
                                             *(f"{h}" for h, _ in ROW), f"{BASELINE} net"))
    rows = []
    for w in doc["windows"]:
        m, b = w["metrics"], w.get("baseline")
        cells = [f"<td>w{w['index']:02d}</td>", f"<td class='l'>{html.escape(w['train'])}</td>",
                 f"<td class='l'>{html.escape(w['test'])}</td>",
                 f"<td class='l'><a href='windows/{w['report']}/report.html'>{html.escape(w['checkpoint_name'])}"
                 f"</a></td>", f"<td class='l'>{html.escape(str(w['trained_on'].get('end', '-')))}</td>"]
        cells += [f"<td>{html.escape(_cell(k, m))}</td>" for _, k in ROW]
        cells.append(f"<td>{html.escape(fmt(b['net_pnl']) if b else '-')}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    o, ob = doc["overall"], doc.get("overall_baseline")
    overall = "".join(f"<tr><th class='l'>{html.escape(k)}</th><td>{html.escape(fmt(o.get(k)))}</td>"
                      f"<td>{html.escape(fmt(ob.get(k)) if ob else '-')}</td></tr>"
                      for k in ("net_pnl", "gross_pnl", "fees", "trades", "win_rate", "profit_factor", "sharpe_annual",
                                "sortino_annual", "max_drawdown", "turnover_usdt", "time_in_market"))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>walk-forward</title><style>{CSS}</style>"
            f"</head><body><h1>Walk-forward: {html.escape(doc['strategy'])}</h1>"
            f"<p>{len(doc['windows'])} windows: train {fmt(doc['train_s'])} s, test {fmt(doc['test_s'])} s, "
            f"step {fmt(doc['step_s'])} s{' (anchored)' if doc['anchored'] else ''}; each model trained by "
            f"training/train.py on its train range only.</p><p><b>{html.escape(doc['verdict'])}</b></p>"
            + img_tag(png, "chained equity") +
            f"<h2>Windows</h2><table><tr>{head}</tr>{''.join(rows)}</table>"
            f"<h2>Overall (the test windows chained)</h2><table><tr><th></th>"
            f"<th><a href='overall/report.html'>{html.escape(doc['strategy'])}</a></th>"
            f"<th>{'<a href=' + chr(39) + 'overall-imbalance/report.html' + chr(39) + '>' if ob else ''}{BASELINE}"
            f"{'</a>' if ob else ''}</th></tr>{overall}</table></body></html>")


# ------------------------------------------------------------------------------------ the run


def run(paths: list[Path], *, train_ns: int, test_ns: int, step_ns: int, anchored: bool = False,
        strategy: str = "deeplob", config: Path | None = None, out_dir: Path = Path("reports"),
        baseline: bool = True, trainer_flags: list[str] | None = None, echo: bool = True,
        progress_factory: Callable[[str], Callable[[int, int], None] | None] | None = None) -> Path:
    """The whole walk-forward (module docstring); returns its folder."""
    from hftbot.backtest.engine import prepare_recording, run_backtest
    from hftbot.config import load_config
    from hftbot.model import dataset as ds

    say = print if echo else (lambda *_, **__: None)
    cfg = load_config(config)
    mod = train_script()
    levels = max(cfg.model.levels, 10)  # what the trainer rebuilds with (its --book-levels default): one cache
    rec = ds.open_recordings(paths, levels, log=say)
    first, last = rec.files[0].first_ns, rec.files[-1].last_ns
    wins = windows(first, last + 1, train_ns, test_ns, step_ns, anchored)
    start = datetime.fromtimestamp(wins[0].test_start_ns / 1e9, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = fresh_dir(Path(out_dir), f"walkforward-{start}")
    say(f"walkforward: {len(wins)} windows over {iso_ns(first)} .. {iso_ns(last)} -> {folder}")
    prepare_recording(paths, cfg)  # every window's runs stop at its end: decode the replay input once
    model_runs, base_runs, rows = [], [], []
    for w in wins:
        say(f"w{w.index:02d}: train {iso_ns(w.train_start_ns)} .. {iso_ns(w.train_end_ns)}, "
            f"test .. {iso_ns(w.test_end_ns)}")
        ckpt = train_window(mod, trainer_argv(paths, w, folder, config, trainer_flags or []))
        meta = json.loads(ckpt.read_text())
        prog = progress_factory(f"w{w.index:02d} {strategy}") if progress_factory else None
        res = clip(run_backtest(paths, strategy=strategy, checkpoint=ckpt, cfg=cfg, start_ns=w.test_start_ns,
                                end_ns=w.test_end_ns, progress=prog), w.test_start_ns, w.test_end_ns)
        res.name = f"{strategy} w{w.index:02d}"
        m = compute_metrics(res)
        write_report(res, folder / "windows", run=f"w{w.index:02d}", metrics=m)
        row = {**w.to_dict(), "checkpoint": str(ckpt), "checkpoint_name": ckpt.name,
               "trained_on": meta.get("data", {}), "report": f"w{w.index:02d}", "metrics": m}
        if baseline:
            prog = progress_factory(f"w{w.index:02d} {BASELINE}") if progress_factory else None
            b = clip(run_backtest(paths, strategy=BASELINE, cfg=cfg, start_ns=w.test_start_ns, end_ns=w.test_end_ns,
                                  progress=prog), w.test_start_ns, w.test_end_ns)
            b.name = f"{BASELINE} w{w.index:02d}"
            bm = compute_metrics(b)
            write_report(b, folder / "windows", run=f"w{w.index:02d}-{BASELINE}", metrics=bm)
            row["baseline"] = bm
            base_runs.append(b)
        model_runs.append(res)
        rows.append(row)
    overall = chain(model_runs, f"{strategy} walk-forward")
    om = compute_metrics(overall)
    write_report(overall, folder, run="overall", metrics=om)
    ob, obm = None, None
    if baseline:
        ob = chain(base_runs, f"{BASELINE} walk-forward")
        obm = compute_metrics(ob)
        write_report(ob, folder, run=f"overall-{BASELINE}", metrics=obm)
    doc = {"strategy": strategy, "paths": [str(p) for p in paths], "train_s": train_ns / 1e9, "test_s": test_ns / 1e9,
           "step_s": step_ns / 1e9, "anchored": anchored, "trainer_flags": trainer_flags or [],
           "windows": rows, "overall": om, "overall_baseline": obm, "verdict": verdict(om, obm)}
    write_bytes_atomic(folder / "walkforward.json", json.dumps(json_ready(doc), indent=1, allow_nan=False,
                                                               default=str).encode())
    write_bytes_atomic(folder / "walkforward.html", page(doc, plot_chained(overall, ob, wins)).encode())
    if echo:
        print_table(f"walk-forward {strategy}: {len(wins)} windows (USDT; win% in %; f1: signal macro-F1)",
                    ["window", "test from", *(h for h, _ in ROW), f"{BASELINE}"],
                    [[f"w{r['index']:02d}", iso_ns(r["test_start_ns"])[:19], *(_cell(k, r["metrics"]) for _, k in ROW),
                      _cell("net_pnl", r["baseline"]) if "baseline" in r else "-"] for r in rows]
                    + [["overall", "", *(_cell(k, om) for _, k in ROW), _cell("net_pnl", obm) if obm else "-"]])
        print(doc["verdict"])
        print(json.dumps(json_ready({"walkforward": str(folder), "windows": len(wins), "net_pnl": om["net_pnl"],
                                     "baseline_net_pnl": obm["net_pnl"] if obm else None, "trades": om["trades"]}),
                         allow_nan=False), flush=True)
    return folder


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hftbot.backtest walkforward", description=__doc__.split("\n\n")[0],
                                epilog="flags after -- go to training/train.py (e.g. -- --epochs 3)")
    p.add_argument("paths", nargs="+", type=Path, help="recordings, .gz captures or folders of them")
    p.add_argument("--train", default="6", help="train window (hours, or 90s/30m/6h/1d; default 6)")
    p.add_argument("--test", default="1", help="test window (default 1 hour)")
    p.add_argument("--step", default=None, help="roll by (default: the test window)")
    p.add_argument("--anchored", action="store_true", help="train from the data's start each time (growing)")
    p.add_argument("--strategy", default="deeplob", help="the strategy the models drive (default deeplob)")
    p.add_argument("--config", type=Path, default=None, help="TOML config for the trainer and the replay")
    p.add_argument("--out", type=Path, default=Path("reports"), help="report folder (default reports/)")
    p.add_argument("--no-baseline", action="store_true", help=f"do not run the {BASELINE} baseline per window")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        k = argv.index("--")
        argv, extra = argv[:k], argv[k + 1:]
    a = parser().parse_args(argv)
    from hftbot.backtest.progress import ProgressBar
    from hftbot.config import ConfigError
    from hftbot.model.dataset import DatasetError

    try:
        train_ns = parse_duration_ns(a.train, "--train")
        test_ns = parse_duration_ns(a.test, "--test")
        step_ns = parse_duration_ns(a.step, "--step") if a.step is not None else test_ns
        for p in a.paths:
            if not p.exists():
                raise ValueError(f"walkforward: {p}: no such file or folder")
        if a.config is not None and not a.config.is_file():
            raise ValueError(f"walkforward: --config {a.config}: no such file")
        bars: list[ProgressBar] = []

        def bar(label: str) -> ProgressBar:
            if bars:
                bars[-1].close()
            bars.append(ProgressBar(label, unit="frames"))
            return bars[-1]

        folder = run(a.paths, train_ns=train_ns, test_ns=test_ns, step_ns=step_ns, anchored=a.anchored,
                     strategy=a.strategy, config=a.config, out_dir=a.out, baseline=not a.no_baseline,
                     trainer_flags=extra, progress_factory=bar)
        if bars:
            bars[-1].close()
    except (ConfigError, DatasetError, ValueError, FileNotFoundError) as e:
        print(f"walkforward: {e}" if not str(e).startswith("walkforward") else str(e), file=sys.stderr)
        return 2
    print(f"report: {folder}")
    return 0
