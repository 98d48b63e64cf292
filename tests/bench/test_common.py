"""The benchmark command line and the one latency shape every benchmark prints."""

from __future__ import annotations

import json

from hftbot.bench.__main__ import available, main
from hftbot.bench.common import percentiles_us, print_json


def test_only_benchmarks_are_offered(capsys):
    names = available()
    assert {"book", "e2e", "exec", "faults", "inference", "ring", "sim", "strategy"} <= set(names)
    assert "common" not in names and "faultrun" not in names  # helpers, not benchmarks
    assert main(["common"]) == 2
    assert "unknown benchmark 'common'" in capsys.readouterr().err


def test_latency_shape_is_microseconds_with_fixed_keys():
    p = percentiles_us([1000, 2000, 3000, 4000])
    assert list(p) == ["p50", "p99", "p99.9", "max", "mean", "n"]
    assert (p["p50"], p["max"], p["mean"], p["n"]) == (2.5, 4.0, 2.5, 4)
    assert percentiles_us([])["n"] == 0


def test_json_line_is_valid_json_with_nan_as_null(capsys):
    print_json({"bench": "x", "lat_us": percentiles_us([])})
    line = capsys.readouterr().out.strip()
    d = json.loads(line, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert d["lat_us"]["p50"] is None and d["lat_us"]["n"] == 0 and "machine" in d


def test_steal_share_is_the_steal_ticks_over_all_ticks_between_two_readings():
    from hftbot.bench.common import cpu_times, steal_pct

    assert steal_pct((100, 10_000), (150, 11_000)) == 5.0
    assert steal_pct((100, 10_000), (100, 10_000)) is None  # no time passed: nothing to say
    assert steal_pct(None, (1, 2)) is None and steal_pct((1, 2), None) is None
    now = cpu_times()
    if now is not None:  # Linux: the machine's own counters, steal a part of the total
        steal, total = now
        assert 0 <= steal <= total and total > 0


def test_backtest_side_by_side_refuses_an_interpreter_without_hftbacktest_before_running(tmp_path, capsys):
    import sys

    from hftbot.bench import backtest

    missing = tmp_path / "no-python"
    assert backtest.main(["--quick", "--hftbacktest", str(missing)]) == 2
    assert f"cannot run {missing}" in capsys.readouterr().err
    # this interpreter runs but has no hftbacktest (it pins an older numpy: its own venv)
    import importlib.util

    if importlib.util.find_spec("hftbacktest") is None:
        assert backtest.hftbacktest_problem(sys.executable).endswith("pip install hftbacktest==2.4.4)")
