"""The trade log on disk: real Parquet and CSV files read back with pandas; restarts; no secrets."""

from __future__ import annotations

import pandas as pd
import pytest

from hftbot.config import secrets
from hftbot.exec.fees import FeeModel
from hftbot.exec.messages import BUY, SELL
from hftbot.exec.positions import Positions
from hftbot.exec.tradelog import COLUMNS, TradeLog, trades_dir
from tests.exec.helpers import LOT, TICK, fill, request

DAY1 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, ms
DAY2 = DAY1 + 86_400_000


def closed_trades(run: str = "r1", t0: int = DAY1 + 1_000, n: int = 3) -> list:
    """n long round trips of 1 SOL: bought at 150.00, sold at 150.10, 150.20, ... with taker fees."""
    p = Positions(TICK, LOT, FeeModel(), symbol="SOLUSDT", strategy="deeplob", run=run)
    for k in range(n):
        p.on_request(request(f"b{k}", BUY, 100, 15000, tag="entry", model_id=5))
        p.on_request(request(f"s{k}", SELL, 100, 15010 + 10 * k, tag="exit_horizon", model_id=5))
        p.on_fill(fill(BUY, 100, 15000, 0.075, trade_id=2 * k + 1, time_ms=t0 + 10_000 * k, client_id=f"b{k}",
                       order_id=2 * k + 1))
        p.on_fill(fill(SELL, 100, 15010 + 10 * k, 0.075, trade_id=2 * k + 2, time_ms=t0 + 10_000 * k + 2_500,
                       client_id=f"s{k}", order_id=2 * k + 2))
    return p.take_closed()


def test_trades_are_written_as_parquet_and_csv_that_pandas_reads(tmp_path):
    folder = trades_dir(tmp_path, "sim", "solusdt")
    assert folder == tmp_path / "trades" / "sim" / "SOLUSDT"
    log = TradeLog(folder)
    assert log.append(closed_trades()) == 3
    assert log.flush() == 3 and log.flush() == 0
    df = pd.read_parquet(folder / "parquet" / "trades-2026-01-01.parquet")
    assert list(df.columns) == list(COLUMNS) and len(df) == 3
    assert df.gross_pnl.tolist() == pytest.approx([0.1, 0.2, 0.3])
    assert df.net_pnl.tolist() == pytest.approx([0.1 - 0.15, 0.2 - 0.15, 0.3 - 0.15])
    assert (df.net_pnl > 0).mean() == pytest.approx(2 / 3)  # win rate net of fees
    assert df.holding_ms.tolist() == [2_500] * 3 and (df.side == "LONG").all()
    assert df.exit_time.iloc[0] == pd.Timestamp(DAY1 + 3_500, unit="ms", tz="UTC")
    csv = pd.read_csv(folder / "csv" / "trades-2026-01-01.csv")
    assert len(csv) == 3 and csv.net_pnl.tolist() == pytest.approx(df.net_pnl.tolist())
    assert csv.entry_tag.tolist() == ["entry"] * 3 and csv.model_id.tolist() == [5] * 3
    assert not list(folder.rglob(".*"))  # no temporary file left behind


def test_a_restart_continues_the_days_file_and_days_split_by_exit_time(tmp_path):
    folder = tmp_path / "t"
    first = TradeLog(folder)
    first.append(closed_trades("run1", n=2))
    first.close()
    second = TradeLog(folder)  # a new process, same day
    second.append(closed_trades("run2", n=1))
    second.append(closed_trades("run2", t0=DAY2 + 5_000, n=1))
    second.flush()
    day1 = pd.read_parquet(folder / "parquet" / "trades-2026-01-01.parquet")
    assert day1.run.tolist() == ["run1", "run1", "run2"]
    assert len(pd.read_csv(folder / "csv" / "trades-2026-01-01.csv")) == 3
    assert pd.read_parquet(folder / "parquet" / "trades-2026-01-02.parquet").run.tolist() == ["run2"]
    assert len(pd.read_parquet(folder / "parquet")) == 4  # the whole folder, every day


def test_an_unreadable_days_file_is_a_clear_error_and_is_not_overwritten(tmp_path):
    folder = tmp_path / "t"
    (folder / "parquet").mkdir(parents=True)
    bad = folder / "parquet" / "trades-2026-01-01.parquet"
    bad.write_bytes(b"not parquet")
    log = TradeLog(folder)
    log.append(closed_trades(n=1))
    with pytest.raises(ValueError, match=r"trades-2026-01-01\.parquet cannot be read as a trade log"):
        log.flush()
    assert bad.read_bytes() == b"not parquet"


def test_secrets_never_reach_the_trade_files(tmp_path):
    env = {"HFTBOT_API_KEY": "key-AKIAXYZ123456", "HFTBOT_API_SECRET": "sec-ZYXWV987654321",
           "HFTBOT_ED25519_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----MC4CAQAwBQYDK2VwBCIEIabc"}
    s = secrets(env=env, dotenv=tmp_path / "none.env")
    assert s.api_key == env["HFTBOT_API_KEY"]  # they are loaded in this process ...
    log = TradeLog(tmp_path / "t")
    log.append(closed_trades(run="r1"))
    log.flush()
    files = [f for f in (tmp_path / "t").rglob("*") if f.is_file()]
    assert len(files) == 2
    for f in files:
        data = f.read_bytes()
        for value in env.values():
            for piece in (value, value[-12:]):  # ... and no part of them is in any file
                assert piece.encode() not in data, (f.name, piece)
