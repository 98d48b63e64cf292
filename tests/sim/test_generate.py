"""`python -m hftbot.sim generate` writes recordings the feed syncs from exactly; `stats` reads any source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hftbot.feed.core import FeedCore, Instrument
from hftbot.feed.recording import iter_raw
from hftbot.sim.__main__ import main


@pytest.mark.parametrize("speed", [100, 0])
def test_generated_recording_syncs_in_the_feed_without_a_gap(tmp_path, speed) -> None:
    args = ["generate", "--hours", "0.02", "--seed", "4", "--out", str(tmp_path), "--speed-ms", str(speed)]
    assert main(args) == 0
    name = f"solusdt@depth@{speed}ms"
    rows = list(iter_raw(tmp_path))
    streams = [s for _, s, _ in rows]
    assert streams.count("solusdt@depthSnapshot") == 1
    assert {name, "solusdt@bookTicker", "solusdt@aggTrade"} <= set(streams)
    assert [ns for ns, _, _ in rows] == sorted(ns for ns, _, _ in rows)
    core = FeedCore(levels=10, instrument=Instrument.from_strings("0.01", "0.01"), check_tickers=True)
    for ns, stream, payload in rows:
        frame = payload.encode()
        if stream.endswith("@depthSnapshot"):
            core.on_snapshot_frame(ns, frame)
        else:
            core.on_frame(ns, frame)
    depth = streams.count(name)
    assert core.synced and core.gaps == 0 and core.resyncs <= 1
    assert core.depth_applied >= depth - 1  # all but (at most) the one before the snapshot
    assert core.ticker_mismatches == 0
    if speed == 0:  # diffs per transaction: a bookTicker follows its own diff
        assert core.ticker_checks > 100
    else:  # about 10 depth updates per simulated second at @100ms; tickers are held, then checked
        assert 0.6 * 72 * 10 <= depth <= 72 * 10
        assert core.counters()["ticker_checks_held"] > 100


def test_generate_refuses_a_bad_duration(tmp_path, capsys) -> None:
    assert main(["generate", "--hours", "0", "--out", str(tmp_path)]) == 2
    assert "hours" in capsys.readouterr().err


def test_stats_prints_model_beside_a_capture(tmp_path, capsys) -> None:
    pytest.importorskip("pyarrow")
    main(["generate", "--hours", "0.01", "--out", str(tmp_path)])
    capsys.readouterr()
    assert main(["stats", str(tmp_path), "--minutes", "0.5"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    facts = json.loads(out[-1])
    assert out[0].startswith("fact") and any("spread = 1 tick share" in line for line in out)
    assert facts["real"]["counts"]["depth"] > 0 and facts["model"]["spread_share"]["1"] > 0.5


def test_packaged_capture_facts_are_the_captures() -> None:
    from hftbot.sim import stats

    capture = Path(__file__).resolve().parents[1] / "data" / "btcusdt_20240808.gz"
    assert stats.reference_facts() == stats.compute(iter_raw(capture))


def test_stats_without_a_path_works_from_any_folder(tmp_path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "hftbot.sim", "stats", "--minutes", "0.2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    facts = json.loads(p.stdout.strip().splitlines()[-1])
    assert facts["real"]["counts"]["depth"] > 0 and "BTCUSDT 2024-08-08" in p.stdout.splitlines()[0]
