"""The report folder: figures, trades, PNGs and one self-contained HTML page, read back."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pandas as pd
import pytest

from hftbot.backtest import report as rp
from hftbot.backtest.metrics import compute_metrics
from tests.backtest.build import random_walk, result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def walk():
    return random_walk("deeplob", n=3000, seed=3)


def test_report_folder_holds_every_file_and_they_read_back(tmp_path, walk):
    folder = rp.write_report(walk, tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("deeplob-2024")
    names = {p.name for p in folder.iterdir()}
    assert names == {"metrics.json", "trades.parquet", "equity.parquet", "fills.parquet", "equity.png",
                     "position.png", "price.png", "calibration.png", "report.html"}
    doc = json.loads((folder / "metrics.json").read_text())
    assert doc["metrics"] == json.loads(json.dumps(compute_metrics(walk)))
    trades = pd.read_parquet(folder / "trades.parquet")
    assert len(trades) == len(walk.trades) > 10
    assert trades["net_pnl"].tolist() == [t.net_pnl for t in walk.trades]
    eq = pd.read_parquet(folder / "equity.parquet")
    assert np.array_equal(eq["equity"].to_numpy(), walk.equity["equity"])
    assert len(pd.read_parquet(folder / "fills.parquet")) == len(walk.fills)
    for name in ("equity", "position", "price", "calibration"):
        data = (folder / f"{name}.png").read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000


def test_html_is_self_contained_with_the_pngs_inlined(tmp_path, walk):
    folder = rp.write_report(walk, tmp_path)
    page = (folder / "report.html").read_text()
    inlined = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(inlined) == 4
    files = {(folder / f"{n}.png").read_bytes() for n in ("equity", "position", "price", "calibration")}
    assert {base64.b64decode(x) for x in inlined} == files
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched from anywhere
    m = compute_metrics(walk)
    assert rp.fmt(m["net_pnl"]) in page and rp.fmt(m["trades"]) in page and "macro_f1" in page


def test_a_run_without_signals_has_no_calibration_plot_and_says_so(tmp_path):
    r = random_walk("imbalance", n=500, seed=1, with_signals=False)
    folder = rp.write_report(r, tmp_path)
    assert not (folder / "calibration.png").exists()
    assert "no labelled model signals" in (folder / "report.html").read_text()


def test_an_empty_run_still_reports(tmp_path):
    folder = rp.write_report(result("idle"), tmp_path)
    doc = json.loads((folder / "metrics.json").read_text())
    assert doc["metrics"]["trades"] == 0 and doc["metrics"]["net_pnl"] == 0.0
    assert len(pd.read_parquet(folder / "trades.parquet")) == 0
    assert "no closed trade" in (folder / "report.html").read_text()


def test_run_names_keep_older_reports_and_bad_names_are_refused(tmp_path):
    r = result("mm")
    first = rp.write_report(r, tmp_path)
    second = rp.write_report(r, tmp_path)
    assert second.name == first.name + "-2" and (first / "report.html").exists()
    assert rp.write_report(r, tmp_path, run="mine").name == "mine"
    with pytest.raises(ValueError, match="run name '../x'"):
        rp.write_report(r, tmp_path, run="../x")


def test_downsampling_keeps_the_extremes():
    y = np.sin(np.linspace(0, 50, 200_000))
    y[123_457] = -9.0  # a spike a plain stride would miss
    y[7] = 5.0
    i = rp.downsample(len(y), y, max_points=1000)
    assert len(i) <= 1000 and 123_457 in i and 7 in i and i[0] == 0 and i[-1] == len(y) - 1
    assert np.all(np.diff(i) > 0)
    assert np.array_equal(rp.downsample(10, np.arange(10.0)), np.arange(10))
