"""Several strategies or checkpoints on the same data, side by side: one table and one HTML page.

`compare_runs(results, out_dir)` writes `<out_dir>/compare-<UTC start of the data>/`:

    comparison.json   every run's metrics (compute_metrics) and the table's rows
    compare.html      the side-by-side table, every run's equity and drawdown on one chart, a line
                      per run saying whether it beat the imbalance baseline; self-contained
                      (images inlined), with relative links to each run's own report
    <run>/            each run's full report (hftbot/backtest/report.py)

and prints the table (aligned) and one JSON line. The runs must cover the same data — the same
symbol, the same recordings when their `settings["paths"]` say, and the same [start_ns, end_ns]
within one equity period (a run's first and last sample can differ by a signal's latency); an
error names the run that differs — and the `imbalance` baseline must be among them: a strategy is
judged by whether it beats the simplest signal on the same replay, not by its PnL alone. The CLI
adds it when the user did not name it (`with_baseline`), so `--strategy deeplob,mm` compares
three runs; one strategy with at most one checkpoint is a single run, not a comparison.
"""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from hftbot.atomic import write_bytes_atomic
from hftbot.backtest.metrics import compute_metrics, json_ready
from hftbot.backtest.report import (
    CSS,
    SECTIONS,
    as_datetimes,
    downsample,
    fmt,
    fresh_dir,
    img_tag,
    iso_ns,
    new_figure,
    png_bytes,
    safe_name,
    write_report,
)
from hftbot.backtest.result import BacktestResult
from hftbot.bench.common import print_table

BASELINE = "imbalance"
# the printed table: (column header, metric key)
COLUMNS = (
    ("net", "net_pnl"), ("gross", "gross_pnl"), ("fees", "fees"), ("trades", "trades"), ("win%", "win_rate"),
    ("pf", "profit_factor"), ("sharpe", "sharpe_annual"), ("sortino", "sortino_annual"),
    ("maxdd", "max_drawdown"), ("turnover", "turnover_usdt"), ("in mkt", "time_in_market"),
)


def with_baseline(strategies: list[str]) -> list[str]:
    """`strategies` with the imbalance baseline added (first) when it is missing."""
    return list(strategies) if BASELINE in strategies else [BASELINE, *strategies]


def _check_same_data(results: list[BacktestResult]) -> None:
    if not results:
        raise ValueError("compare: no runs to compare")
    ref = results[0]
    for r in results[1:]:
        if r.symbol != ref.symbol:
            raise ValueError(f"compare: {r.name!r} ran on {r.symbol}, {ref.name!r} on {ref.symbol}: not the same data")
        paths, ref_paths = r.settings.get("paths"), ref.settings.get("paths")
        if paths is not None and ref_paths is not None and list(paths) != list(ref_paths):
            raise ValueError(f"compare: {r.name!r} replayed {paths}, {ref.name!r} {ref_paths}: not the same data")
        slack = max(r.period_ns, ref.period_ns)  # the loop's first/last sample may differ by a signal's latency
        if abs(r.start_ns - ref.start_ns) > slack or abs(r.end_ns - ref.end_ns) > slack:
            raise ValueError(f"compare: {r.name!r} covers {iso_ns(r.start_ns)}..{iso_ns(r.end_ns)}, {ref.name!r} "
                             f"{iso_ns(ref.start_ns)}..{iso_ns(ref.end_ns)}: not the same data")
    if not any(r.strategy == BASELINE for r in results):
        raise ValueError(f"compare: the {BASELINE!r} baseline must be among the runs (got strategies "
                         f"{[r.strategy for r in results]}); with_baseline() adds it")


def _unique_names(results: list[BacktestResult]) -> list[str]:
    """Run labels, made unique (two checkpoints of one strategy: `deeplob`, `deeplob-2`)."""
    seen: dict[str, int] = {}
    out = []
    for r in results:
        base = safe_name(r.name)
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def _cell(key: str, v: object) -> str:
    if v is None:
        return "-"
    if key in ("win_rate", "time_in_market"):
        return f"{v * 100:.1f}"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.0f}"
    return str(v)


def verdicts(names: list[str], metrics: list[dict]) -> list[str]:
    """One sentence per run against the baseline's net PnL (the first imbalance run)."""
    b = next(i for i, m in enumerate(metrics) if m["strategy"] == BASELINE)
    base = metrics[b]["net_pnl"]
    out = []
    for i, (n, m) in enumerate(zip(names, metrics, strict=True)):
        if i == b:
            out.append(f"{n} is the {BASELINE} baseline: net {base:.6g} USDT")
        elif m["net_pnl"] > base:
            out.append(f"{n} beats the {BASELINE} baseline by {m['net_pnl'] - base:.6g} USDT net")
        else:
            out.append(f"{n} does NOT beat the {BASELINE} baseline ({m['net_pnl']:.6g} against {base:.6g} USDT net)")
    return out


def plot_equities(names: list[str], results: list[BacktestResult]) -> bytes:
    fig, (top, bottom) = new_figure(2, height=6.0, ratios=[3, 1])
    for n, r in zip(names, results, strict=True):
        eq = r.equity
        if not len(eq):
            continue
        i = downsample(len(eq), eq["equity"])
        y = eq["equity"]
        dd = y - np.maximum.accumulate(np.maximum(y, 0.0))
        lw, ls = (1.6, "--") if r.strategy == BASELINE else (1.0, "-")
        line, = top.plot(as_datetimes(eq["t_ns"][i]), y[i], lw=lw, ls=ls, label=n)
        bottom.plot(as_datetimes(eq["t_ns"][i]), dd[i], lw=0.8, ls=ls, color=line.get_color())
    top.axhline(0, color="black", lw=0.5)
    if top.get_legend_handles_labels()[0]:
        top.legend(loc="upper left")
    top.set_title("net equity (USDT); the baseline dashed")
    bottom.set_ylabel("drawdown")
    return png_bytes(fig)


def page(names: list[str], results: list[BacktestResult], metrics: list[dict], png: bytes,
         links: list[str]) -> str:
    ref = results[0]
    head = "".join(f'<th><a href="{html.escape(link)}">{html.escape(n)}</a></th>'
                   for n, link in zip(names, links, strict=True))
    rows = [f'<tr><th class="l">strategy</th>{"".join(f"<td>{html.escape(r.strategy)}</td>" for r in results)}</tr>']
    for title, keys in SECTIONS.items():
        rows.append(f'<tr><th class="l" colspan="{len(names) + 1}">{html.escape(title)}</th></tr>')
        for k in keys:
            vals = [m.get(k) for m in metrics]
            nums = [v for v in vals if isinstance(v, int | float) and not isinstance(v, bool)]
            best = max(nums) if k in ("net_pnl", "sharpe_annual", "sortino_annual") and nums else None
            cells = "".join(f"<td>{'<b>' if best is not None and v == best else ''}{html.escape(fmt(v))}"
                            f"{'</b>' if best is not None and v == best else ''}</td>" for v in vals)
            rows.append(f'<tr><th class="l">{html.escape(k)}</th>{cells}</tr>')
    items = "".join(f"<li>{html.escape(v)}</li>" for v in verdicts(names, metrics))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>backtest comparison</title>"
            f"<style>{CSS}</style></head><body><h1>Backtest comparison</h1>"
            f"<p>{len(results)} runs on {html.escape(ref.symbol)}, {iso_ns(ref.start_ns)} – {iso_ns(ref.end_ns)}; "
            f"Sharpe and Sortino from {fmt(metrics[0]['period_s'])} s periods, annualised over a 365-day year. "
            f"Best net PnL, Sharpe and Sortino in bold. Each run's name links to its own report.</p>"
            f"<ul>{items}</ul>" + img_tag(png, "equity of every run") +
            f"<table><tr><th></th>{head}</tr>{''.join(rows)}</table></body></html>")


def compare_runs(results: list[BacktestResult], out_dir: Path, *, capital_usdt: float | None = None,
                 echo: bool = True) -> Path:
    """Write the comparison folder (see the module docstring), print its table and JSON line
    (`echo`), and return the folder."""
    _check_same_data(results)
    names = _unique_names(results)
    metrics = [compute_metrics(r, capital_usdt) for r in results]
    start = datetime.fromtimestamp(results[0].start_ns / 1e9, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = fresh_dir(Path(out_dir), f"compare-{start}")
    links = []
    for n, r, m in zip(names, results, metrics, strict=True):
        write_report(r, folder, run=n, metrics=m)
        links.append(f"{n}/report.html")
    rows = [{"name": n, "strategy": m["strategy"], **{k: m[k] for _, k in COLUMNS}}
            for n, m in zip(names, metrics, strict=True)]
    doc = {"folder": str(folder), "rows": rows, "verdicts": verdicts(names, metrics),
           "runs": dict(zip(names, metrics, strict=True))}
    write_bytes_atomic(folder / "comparison.json", json.dumps(json_ready(doc), indent=1, allow_nan=False).encode())
    write_bytes_atomic(folder / "compare.html", page(names, results, metrics, plot_equities(names, results),
                                                     links).encode())
    if echo:
        print_table(f"comparison on {results[0].symbol} {iso_ns(results[0].start_ns)}..{iso_ns(results[0].end_ns)}"
                    f" (USDT; win% and in mkt in %; sharpe/sortino annualised)",
                    ["run", "strategy", *(h for h, _ in COLUMNS)],
                    [[n, m["strategy"], *(_cell(k, m[k]) for _, k in COLUMNS)] for n, m in zip(names, metrics,
                                                                                                 strict=True)])
        for v in doc["verdicts"]:
            print(v)
        print(json.dumps(json_ready({"comparison": str(folder), "rows": rows}), allow_nan=False), flush=True)
    return folder
