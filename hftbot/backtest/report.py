"""One run's report folder: the figures, the trade list and the plots a trader looks at.

`write_report(result, out_dir)` writes `<out_dir>/<run>/`:

    metrics.json      compute_metrics(result) (hftbot/backtest/metrics.py), plus the run's settings
    trades.parquet    the closed round trips, in the trade log's schema (hftbot/exec/tradelog.py)
    equity.parquet    the equity samples (EQUITY_DTYPE) and fills.parquet the fills (FILL_DTYPE)
    equity.png        net equity, and the drawdown from its running peak beneath it
    position.png      the position held (base units)
    price.png         the mid with trade entries (▲ long, ▼ short) and exits (×)
    calibration.png   per class: mean predicted probability against the realised frequency
                      (only when the run had model signals; the page says so otherwise)
    report.html       all of it on one self-contained page (images inlined as base64, no links)

Every file is written atomically (hftbot/atomic.py), so a reader never sees half a report. The
run name defaults to `<name>-<UTC start of the data>`; when that folder exists a `-2`, `-3`, ...
suffix keeps the older report (an explicit `run` is written into, replacing its files).

Plots use matplotlib's object API with the Agg canvas (no pyplot, no global backend switch, no
display needed). Curves longer than `MAX_POINTS` are reduced to each bucket's first, min, max
and last sample, so a drawdown's trough or a price spike survives the downsampling.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hftbot.atomic import atomic_path, write_bytes_atomic
from hftbot.backtest.metrics import compute_metrics, json_ready
from hftbot.backtest.result import BacktestResult
from hftbot.exec.tradelog import trades_table
from hftbot.model.metrics import CLASS_NAMES

MAX_POINTS = 4000  # per plotted curve
MAX_TRADE_ROWS = 500  # rows of the trade table on the page (the Parquet file has them all)
PLOTS = ("equity", "position", "price", "calibration")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


# ------------------------------------------------------------------------------------ helpers


def downsample(n: int, y: np.ndarray | None = None, max_points: int = MAX_POINTS) -> np.ndarray:
    """Indices to plot of a curve of `n` points: all when n <= max_points, else each bucket's first,
    argmin, argmax and last (sorted, unique), about `max_points` in all."""
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // 4)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    keep = [edges[:-1], edges[1:] - 1]
    if y is not None:
        for a, b in itertools.pairwise(edges):
            seg = y[a:b]
            keep.append(np.array([a + int(np.argmin(seg)), a + int(np.argmax(seg))]))
    return np.unique(np.concatenate(keep))


def safe_name(name: str) -> str:
    """A name usable as a folder name (anything but letters, digits, '.', '_', '-' becomes '_')."""
    return _SAFE.sub("_", name).strip(".") or "run"


def run_name(result: BacktestResult) -> str:
    start = datetime.fromtimestamp(result.start_ns / 1e9, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{safe_name(result.name)}-{start}"


def fresh_dir(out_dir: Path, base: str, run: str | None = None) -> Path:
    """`out_dir/run` when a run name is given (written into), else `out_dir/base`, or `base-2`,
    `base-3`, ... when that exists (an older report is kept). Created."""
    if run is not None:
        if not run or _SAFE.search(run) or run in (".", ".."):
            raise ValueError(f"report: run name {run!r} must be letters, digits, '.', '_' or '-'")
        folder = out_dir / run
    else:
        folder, k = out_dir / base, 1
        while folder.exists():
            k += 1
            folder = out_dir / f"{base}-{k}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def as_datetimes(t_ns: np.ndarray) -> np.ndarray:
    return np.asarray(t_ns, dtype="datetime64[ns]")


def new_figure(rows: int = 1, height: float = 3.2, ratios: list[int] | None = None):
    from matplotlib.figure import Figure  # lazy: metrics alone never pays for matplotlib

    fig = Figure(figsize=(11, height * rows if ratios is None else height), dpi=100, layout="constrained")
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": ratios} if ratios else None)[:, 0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, axes


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ plots


def plot_equity(result: BacktestResult) -> bytes:
    eq = result.equity
    fig, (top, bottom) = new_figure(2, height=5.5, ratios=[3, 1])
    if len(eq):
        i = downsample(len(eq), eq["equity"])
        t = as_datetimes(eq["t_ns"][i])
        y = eq["equity"]
        peak = np.maximum.accumulate(np.maximum(y, 0.0))
        dd = (y - peak)[i]
        top.plot(t, y[i], color="tab:blue", lw=1, label="net equity")
        top.plot(t, (y + eq["fees"])[i], color="tab:gray", lw=0.8, alpha=0.7, label="before fees")
        top.legend(loc="upper left")
        bottom.fill_between(t, dd, 0, color="tab:red", alpha=0.4, step="post")
    top.set_title(f"{result.name}: equity (USDT)")
    top.axhline(0, color="black", lw=0.5)
    bottom.set_ylabel("drawdown")
    return png_bytes(fig)


def plot_position(result: BacktestResult) -> bytes:
    eq = result.equity
    fig, (ax,) = new_figure(1)
    if len(eq):
        i = downsample(len(eq), eq["position_lots"].astype(np.float64))
        ax.step(as_datetimes(eq["t_ns"][i]), eq["position_lots"][i] * result.lot, where="post",
                color="tab:purple", lw=1)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_title(f"{result.name}: position ({result.symbol}, base units)")
    return png_bytes(fig)


def plot_price(result: BacktestResult) -> bytes:
    eq = result.equity
    fig, (ax,) = new_figure(1, height=4.0)
    if len(eq):
        i = downsample(len(eq), eq["mid"])
        ax.plot(as_datetimes(eq["t_ns"][i]), eq["mid"][i], color="tab:gray", lw=0.8, label="mid")
    trades = result.trades
    if len(trades) > MAX_POINTS:  # markers beyond a few thousand are a smear; show an even sample
        trades = [trades[k] for k in np.linspace(0, len(trades) - 1, MAX_POINTS).astype(int)]
    for side, marker, color in (("LONG", "^", "tab:green"), ("SHORT", "v", "tab:red")):
        sel = [t for t in trades if t.side == side]
        if sel:
            ax.scatter(as_datetimes(np.array([t.entry_ms for t in sel], dtype=np.int64) * 10**6),
                       [t.entry_px for t in sel], marker=marker, color=color, s=28, zorder=3,
                       label=f"{side.lower()} entry")
    if trades:
        ax.scatter(as_datetimes(np.array([t.exit_ms for t in trades], dtype=np.int64) * 10**6),
                   [t.exit_px for t in trades], marker="x", color="black", s=22, zorder=3, label="exit")
    elif len(result.fills):  # no closed trade (an open position, a quoter that never went flat): the fills
        f = result.fills
        for side, color in ((1, "tab:green"), (-1, "tab:red")):
            m = f["side"] == side
            ax.scatter(as_datetimes(f["t_ns"][m]), f["px"][m], color=color, s=10, zorder=3,
                       label="buy fill" if side > 0 else "sell fill")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left")
    ax.set_title(f"{result.name}: {result.symbol} mid with entries and exits")
    return png_bytes(fig)


def plot_calibration(calib: dict) -> bytes:
    fig, (ax,) = new_figure(1, height=4.5)
    ax.plot([0, 1], [0, 1], color="black", lw=0.6, ls="--", label="perfectly calibrated")
    for name, color in zip(CLASS_NAMES, ("tab:red", "tab:gray", "tab:green"), strict=True):
        c = calib[name]
        if c["bin"]:
            sizes = 10 + 60 * np.sqrt(np.asarray(c["count"]) / max(c["count"]))
            ax.plot(c["mean_predicted"], c["realised"], color=color, lw=1)
            ax.scatter(c["mean_predicted"], c["realised"], s=sizes, color=color, label=name)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted probability (bin mean)")
    ax.set_ylabel("realised frequency")
    ax.legend(loc="upper left")
    ax.set_title("signal calibration (marker area ~ windows in the bin)")
    fig.set_size_inches(6.5, 5.0)
    return png_bytes(fig)


def plots(result: BacktestResult, metrics: dict) -> dict[str, bytes]:
    """PNG bytes by plot name; `calibration` only when the run had labelled signals."""
    out = {"equity": plot_equity(result), "position": plot_position(result), "price": plot_price(result)}
    calib = metrics.get("signal", {}).get("calibration")
    if calib is not None:
        out["calibration"] = plot_calibration(calib)
    return out


# ------------------------------------------------------------------------------------ html

CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 8px;
text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}td.l,th.l{text-align:left}
img{max-width:100%;display:block;margin:0.5em 0 1.5em}.note{color:#666}"""

SECTIONS = {  # metrics on the page, in this order (the JSON has them all)
    "PnL (USDT)": ("net_pnl", "gross_pnl", "fees", "realised_pnl", "unrealised_pnl", "return_pct", "capital_usdt",
                   "capital_basis"),
    "Trades (closed round trips, net of fees)": (
        "trades", "wins", "losses", "win_rate", "avg_win", "avg_loss", "profit_factor", "largest_win",
        "largest_loss", "avg_trade_net", "avg_holding_s", "long_trades", "short_trades"),
    "Risk and returns": ("sharpe_annual", "sortino_annual", "sharpe_period", "sortino_period", "period_s",
                         "periods", "annualisation", "max_drawdown", "max_drawdown_pct", "drawdown_s"),
    "Activity": ("events", "orders", "rejected", "fills", "maker_fills", "taker_fills", "maker_fees", "taker_fees",
                 "turnover_usdt", "turnover_x", "time_in_market", "end_position_lots", "duration_s"),
}


def fmt(v: object) -> str:
    """A figure as the page shows it (None: undefined, shown as a dash)."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.6g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def iso_ns(t_ns: int | None) -> str:
    if t_ns is None:
        return "–"
    return datetime.fromtimestamp(t_ns / 1e9, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def img_tag(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def kv_table(items: list[tuple[str, object]]) -> str:
    rows = "".join(f'<tr><th class="l">{html.escape(k)}</th><td>{html.escape(fmt(v))}</td></tr>' for k, v in items)
    return f"<table>{rows}</table>"


def trades_html(result: BacktestResult) -> str:
    cols = ("side", "entry_ms", "exit_ms", "holding_ms", "qty", "entry_px", "exit_px", "gross_pnl", "fees", "net_pnl",
            "n_fills", "entry_tag", "exit_tag")
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = []
    for t in result.trades[:MAX_TRADE_ROWS]:
        cells = []
        for c in cols:
            v = getattr(t, c)
            text = iso_ns(v * 10**6)[5:] if c in ("entry_ms", "exit_ms") else fmt(v)
            cls = ' class="l"' if isinstance(v, str) else ""
            cells.append(f"<td{cls}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = len(result.trades) - MAX_TRADE_ROWS
    note = f'<p class="note">first {MAX_TRADE_ROWS} of {len(result.trades):,} trades; all are in trades.parquet</p>' \
        if more > 0 else ""
    if not result.trades:
        return '<p class="note">no closed trade</p>'
    return f"<table><tr>{head}</tr>{''.join(body)}</table>{note}"


def page(result: BacktestResult, metrics: dict, pngs: dict[str, bytes]) -> str:
    m = metrics
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>backtest {html.escape(result.name)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Backtest: {html.escape(result.name)}</h1>",
             f"<p>strategy <b>{html.escape(result.strategy)}</b> on {html.escape(result.symbol)}, "
             f"{iso_ns(result.start_ns)} – {iso_ns(result.end_ns)} ({fmt(m['duration_s'])} s, "
             f"{fmt(m['events'])} events); Sharpe and Sortino from {fmt(m['period_s'])} s periods, "
             f"{html.escape(str(m['annualisation']))}.</p>"]
    for title, keys in SECTIONS.items():
        parts.append(f"<h2>{html.escape(title)}</h2>" + kv_table([(k, m.get(k)) for k in keys]))
    parts.append("<h2>Equity and drawdown</h2>" + img_tag(pngs["equity"], "equity and drawdown"))
    parts.append("<h2>Position</h2>" + img_tag(pngs["position"], "position"))
    parts.append("<h2>Price, entries and exits</h2>" + img_tag(pngs["price"], "price with entries and exits"))
    parts.append("<h2>Signals</h2>")
    sig = m.get("signal")
    if sig and "calibration" in pngs:
        parts.append(kv_table([(k, sig.get(k)) for k in ("signals", "labelled", "accuracy", "macro_f1",
                                                          "majority_floor", "brier")]))
        parts.append(img_tag(pngs["calibration"], "signal calibration"))
    else:
        parts.append('<p class="note">no labelled model signals in this run (a strategy without a model, or no '
                     'label at the horizon): no calibration plot</p>')
    parts.append("<h2>Trades</h2>" + trades_html(result))
    settings = json.dumps(json_ready(result.settings), indent=1, default=str)
    parts.append(f"<h2>Settings</h2><pre>{html.escape(settings)}</pre></body></html>")
    return "".join(parts)


# ------------------------------------------------------------------------------------ the folder


def _write_parquet(path: Path, arr: np.ndarray) -> None:
    table = pa.table({name: arr[name] for name in arr.dtype.names})
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def write_report(result: BacktestResult, out_dir: Path, run: str | None = None, *,
                 metrics: dict | None = None, capital_usdt: float | None = None) -> Path:
    """Write `<out_dir>/<run>/` (see the module docstring) and return that folder. `metrics`: already
    computed figures to reuse (the comparison passes them)."""
    m = compute_metrics(result, capital_usdt) if metrics is None else metrics
    folder = fresh_dir(Path(out_dir), run_name(result), run)
    doc = {"metrics": m, "settings": json_ready(result.settings)}
    write_bytes_atomic(folder / "metrics.json",
                       json.dumps(doc, indent=1, allow_nan=False, default=str).encode())
    with atomic_path(folder / "trades.parquet") as tmp:
        pq.write_table(trades_table(result.trades), tmp, compression="zstd")
    _write_parquet(folder / "equity.parquet", result.equity)
    _write_parquet(folder / "fills.parquet", result.fills)
    pngs = plots(result, m)
    for name, png in pngs.items():
        write_bytes_atomic(folder / f"{name}.png", png)
    write_bytes_atomic(folder / "report.html", page(result, m, pngs).encode())
    return folder
