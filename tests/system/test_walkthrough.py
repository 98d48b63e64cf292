"""README.md's walkthrough section, run as written: its `sh` blocks, in order, in a scratch copy of the repo's
layout, with only the shortenings the document lists at its end. If a command in the document
stops working, this fails; nothing here restates the commands."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def walkthrough() -> str:
    """README.md from its `## Walkthrough` heading to the next `## ` heading."""
    text = README.read_text()
    m = re.search(r"^## Walkthrough.*?(?=^## )", text, re.M | re.S)
    assert m, "README.md has no '## Walkthrough' section"
    return m.group(0)
pytestmark = pytest.mark.timeout(600)

RUN_ENV = {"HFTBOT_SIM__RATE_HZ": "80", "HFTBOT_FEED__DEPTH_SPEED": "0ms"}  # as the document lists them
TRAIN_FLAGS = ("--epochs 1 --window 30 --horizon 20 --conv-filters 4 --inception-filters 8 --lstm-hidden 8 "
               "--epoch-windows 500 --val-windows 300 --baseline-fit-windows 500 --threads 1")
RECORD_S = 20.0  # of book updates at 80/s before training: ~1,600 records


def blocks() -> list[str]:
    """The document's `sh` blocks, in order."""
    return [b.strip() for b in re.findall(r"^```sh\n(.*?)^```", walkthrough(), re.M | re.S)]


def step(text: str) -> str:
    """The block whose commands contain `text` (exactly one)."""
    found = [b for b in blocks() if text in b]
    assert len(found) == 1, f"README.md walkthrough: {len(found)} sh blocks contain {text!r}"
    return found[0]


def bash(cmd: str, cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
    r = subprocess.run(["bash", "-euo", "pipefail", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"`{cmd}` exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def test_the_document_has_the_steps_the_test_runs() -> None:
    cmds = blocks()
    assert len(cmds) == 6, cmds
    assert cmds[0] == "python -m hftbot.run"
    assert any(c.startswith("python training/train.py") for c in cmds)
    assert any(c.startswith("python -m hftbot.backtest") for c in cmds)
    assert any(c.startswith("tensorboard --logdir") for c in cmds)


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    work = tmp_path_factory.mktemp("walkthrough")
    shutil.copytree(ROOT / "checkpoints", work / "checkpoints", ignore=shutil.ignore_patterns(".verified"))
    (work / "training").symlink_to(ROOT / "training")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = (work / "run.log").open("w")
    run_cmd = step("python -m hftbot.run")
    run = subprocess.Popen(["bash", "-c", f"exec {run_cmd}"], cwd=work, env={**env, **RUN_ENV}, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    out: dict = {"work": work, "env": env}
    try:
        books = lambda: glob.glob(str(work / "data/recordings/sim/SOLUSDT/*/book-*.parquet"))  # noqa: E731
        deadline = time.monotonic() + 240
        while not books():  # the first book file: the feed is synced and the recorder writing
            assert run.poll() is None, (work / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "no book recording within 240 s"
            time.sleep(0.5)
        time.sleep(RECORD_S)
        out["look"] = bash(step("ls data/recordings"), work, env, 60).stdout
        out["train"] = bash(f"{step('python training/train.py')} {TRAIN_FLAGS}", work, env, 400).stdout
        out["promote"] = bash(step("checkpoint promote"), work, env, 120).stdout
        served = (work / "checkpoints" / "CURRENT").read_text().strip()
        out["served"] = served
        deadline = time.monotonic() + 120
        while f"serving {served}" not in (work / "run.log").read_text():
            assert run.poll() is None, (work / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, f"the running inference did not serve {served} within 120 s"
            time.sleep(0.5)
        time.sleep(3.0)  # a few trades on the new model
        os.killpg(run.pid, signal.SIGINT)  # step 6: Ctrl-C (the terminal's whole foreground group)
        out["rc"] = run.wait(timeout=120)
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait()
        log.close()
    out["log"] = (work / "run.log").read_text()
    yield out


def test_run_record_train_and_the_running_inference_hot_reloads(walk) -> None:
    assert walk["rc"] == 0, walk["log"][-4000:]
    summary = json.loads(walk["log"].strip().splitlines()[-1])
    assert summary["stop_reason"] == "SIGINT" and not summary["failed"]
    ex = summary["execution"]
    assert ex["orders"] >= 1 and ex["fills"] >= 1  # the default strategy traded
    t2o = summary["latency_us"]["tick_to_order_us"]
    assert 0 < t2o["p50"] <= t2o["p99"] <= t2o["p99.9"]  # printed in the summary as well:
    assert re.search(r"tick_to_order_us\s+p50 [\d.]+ µs\s+p99 [\d.]+ µs\s+p99\.9 [\d.]+ µs", walk["log"])
    meta = json.loads((walk["work"] / "checkpoints" / walk["served"]).read_text())
    inference = summary["processes"]["inference"]
    assert inference["model_id"] == meta["model_id"] and inference["swaps"] >= 2  # shipped model, then ours
    assert meta["trained"] is True and "training/train.py" in meta["training"]["command"]
    assert "book records" in walk["look"] and "raw-" in walk["look"]
    assert "model_id=" in walk["promote"] and walk["served"] in walk["promote"]


def test_tensorboard_reads_the_training_curves(walk) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = [p for p in (walk["work"] / "runs").iterdir() if p.is_dir()]
    assert len(runs) == 1
    acc = EventAccumulator(str(runs[0]), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert tags and any("loss" in t for t in tags), tags


@pytest.mark.skipif(find_spec("hftbot.backtest.__main__") is None,
                    reason="hftbot.backtest has no CLI yet (hftbot/backtest/__main__.py, issue 14 part B)")
def test_backtest_on_the_recording_writes_a_report(walk) -> None:
    work = walk["work"]
    bash(step("python -m hftbot.backtest"), work, walk["env"], 400)
    reports = work / "reports"
    assert list(reports.rglob("metrics.json")) and list(reports.rglob("report.html"))


if __name__ == "__main__":  # print the commands as the test runs them
    print("\n".join(blocks()), file=sys.stdout)
