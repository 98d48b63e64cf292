"""`python -m hftbot.backtest` as a user runs it: a report folder, a comparison, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hftbot.backtest.__main__ import parse_time_ns, runs
from tests.backtest.test_parity import parity_tape

CFG = """
[exec]
strategy = "imbalance"
[strategy]
imbalance_qty = 0.1
imbalance_move_bps = 500.0
imbalance_horizon_updates = 5
[backtest]
feed_latency = "zero"
"""


def child_env() -> dict[str, str]:
    """This interpreter's import path for a child process."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def cli(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hftbot.backtest", *args], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=300)


def test_one_run_writes_its_report_and_several_compare(tmp_path):
    tape = parity_tape(tmp_path / "tape.gz")
    (tmp_path / "bt.toml").write_text(CFG)
    p = cli(str(tape), "--config", "bt.toml", "--out", "out", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    summary = json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])
    assert summary["run"] == "imbalance" and summary["trades"] >= 2
    folder = tmp_path / "out" / summary["report"].split("/")[-1]
    assert {"metrics.json", "trades.parquet", "report.html"} <= {f.name for f in folder.iterdir()}
    p = cli(str(tape), "--config", "bt.toml", "--strategy", "mm,deeplob", "--out", "cmp", cwd=tmp_path)
    assert p.returncode == 2 and "deeplob needs a model" in p.stderr  # no CURRENT here: said, not a silent 0
    shipped = Path(__file__).resolve().parents[2] / "checkpoints"
    current = shipped / (shipped / "CURRENT").read_text().strip()
    p = cli(str(tape), "--config", "bt.toml", "--strategy", "mm,deeplob", "--checkpoint", str(current),
            "--out", "cmp", "--start", "2024-07-26T13:20:01", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "imbalance" in p.stdout and list((tmp_path / "cmp").glob("compare-*"))  # the baseline was added


def test_bad_input_exits_2_and_says_what(tmp_path):
    p = cli(str(tmp_path / "missing.gz"), cwd=tmp_path)
    assert p.returncode == 2 and "missing.gz" in p.stderr
    tape = parity_tape(tmp_path / "tape.gz")
    p = cli(str(tape), "--strategy", "nope", cwd=tmp_path)
    assert p.returncode == 2 and "nope" in p.stderr
    p = cli(str(tape), "--start", "yesterday", cwd=tmp_path)
    assert p.returncode == 2 and "--start" in p.stderr


def test_times_and_run_plans():
    assert parse_time_ns("1722000000000000000", "--start") == 1722000000000000000
    assert parse_time_ns("2024-07-26T13:20:00", "--start") == 1722000000 * 10**9
    assert parse_time_ns(None, "--end") is None
    assert runs(["imbalance"], []) == [("imbalance", None)]
    assert runs(["imbalance"], ["a.json", "b.json"]) == [("imbalance", None), ("deeplob", "a.json"),
                                                          ("deeplob", "b.json")]


def test_the_readmes_capture_backtest_runs_as_written_and_both_strategies_trade(tmp_path):
    """README.md "Backtesting the bundled real capture": its command, run from a copy of the repo's
    layout, trades with both strategies (the SOL-sized defaults would be refused for BTC)."""
    import re
    import shutil

    root = Path(__file__).resolve().parents[2]
    section = re.search(r"^## Backtesting the bundled real capture.*?(?=^## )", (root / "README.md").read_text(),
                        re.M | re.S)
    assert section, "README.md lost its capture backtest section"
    (command,) = re.findall(r"^```sh\n(.*?)\n```", section.group(0), re.M | re.S)
    for rel in ("tests/data/btcusdt_20240808.gz", "configs/btcusdt.toml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / rel, tmp_path / rel)
    p = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in json.loads([ln for ln in p.stdout.splitlines() if ln.startswith("{")][-1])["rows"]}
    assert rows["mm"]["trades"] > 20 and rows["imbalance"]["trades"] > 2, rows
    assert "refused" not in p.stderr, p.stderr  # sized for BTC: no notional refusals
    assert list((tmp_path / "reports").glob("compare-*/*.html"))
