"""Comparison: one aligned table + JSON line, one HTML page, the imbalance baseline always there."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest

from hftbot.backtest import compare as cp
from tests.backtest.build import equity, result, trade


def run(name: str, strategy: str, net: float):
    eq = equity([(0, 100, 0, 0, 0, 0), (2, 100, 1, 0, 0.1, net / 2 - 0.1), (5, 100, 0, net + 0.2, 0.2, net)])
    return result(name, strategy=strategy, equity=eq, trades=[trade(net, fees=0.2, strategy=strategy)])


def test_side_by_side_table_page_and_reports(tmp_path, capsys):
    late = run("deeplob", "deeplob", 0.5)
    late.end_ns += 1000  # its last sample a signal's latency later: still the same data
    runs = [run("imbalance", "imbalance", 1.0), run("deeplob", "deeplob", 2.0), late]
    folder = cp.compare_runs(runs, tmp_path)
    out = capsys.readouterr().out.strip().splitlines()
    table = out[1:6]  # header, rule, three runs
    assert len({len(x) for x in table}) == 1  # aligned
    assert table[0].split()[:3] == ["run", "strategy", "net"]
    assert table[2].split()[:3] == ["imbalance", "imbalance", "1"]
    assert table[3].split()[:3] == ["deeplob", "deeplob", "2"]
    assert table[4].split()[:3] == ["deeplob-2", "deeplob", "0.5"]
    assert "deeplob beats the imbalance baseline by 1 USDT net" in out
    assert any(x.startswith("deeplob-2 does NOT beat the imbalance baseline") for x in out)
    line = json.loads(out[-1])
    assert line["comparison"] == str(folder)
    assert [(r["name"], r["net_pnl"], r["trades"]) for r in line["rows"]] == [
        ("imbalance", 1.0, 1), ("deeplob", 2.0, 1), ("deeplob-2", 0.5, 1)]
    doc = json.loads((folder / "comparison.json").read_text())
    assert set(doc["runs"]) == {"imbalance", "deeplob", "deeplob-2"}
    assert doc["runs"]["deeplob"]["net_pnl"] == 2.0
    page = (folder / "compare.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 1
    links = re.findall(r'href="([^"]+)"', page)
    assert links == ["imbalance/report.html", "deeplob/report.html", "deeplob-2/report.html"]
    for link in links:
        assert (folder / link).is_file() and (folder / link).parent.joinpath("metrics.json").is_file()
    assert "<b>2</b>" in page  # the best net PnL in bold
    assert folder.name.startswith("compare-")


def test_the_baseline_must_be_there_and_the_data_the_same(tmp_path):
    with pytest.raises(ValueError, match="'imbalance' baseline must be among the runs"):
        cp.compare_runs([run("a", "deeplob", 1.0), run("b", "mm", 1.0)], tmp_path)
    base = run("imbalance", "imbalance", 1.0)
    longer = dataclasses.replace(run("deeplob", "deeplob", 1.0), end_ns=base.end_ns + base.period_ns + 1)
    with pytest.raises(ValueError, match="'deeplob' covers .*: not the same data"):
        cp.compare_runs([base, longer], tmp_path)
    elsewhere = run("deeplob", "deeplob", 1.0)
    base.settings["paths"], elsewhere.settings["paths"] = ["a.gz"], ["b.gz"]
    with pytest.raises(ValueError, match=r"'deeplob' replayed \['b.gz'\], 'imbalance' \['a.gz'\]"):
        cp.compare_runs([base, elsewhere], tmp_path)
    other = dataclasses.replace(run("deeplob", "deeplob", 1.0), symbol="BTCUSDT")
    with pytest.raises(ValueError, match="ran on BTCUSDT"):
        cp.compare_runs([base, other], tmp_path)
    with pytest.raises(ValueError, match="no runs"):
        cp.compare_runs([], tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was written


def test_with_baseline_adds_imbalance_once():
    assert cp.with_baseline(["deeplob"]) == ["imbalance", "deeplob"]
    assert cp.with_baseline(["mm", "imbalance"]) == ["mm", "imbalance"]
    assert cp.with_baseline(["imbalance"]) == ["imbalance"]
