"""The simulator as a supervised process: serves on the given port, beats, stops when asked."""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time

import requests

from hftbot.config import SimConfig, load_config
from hftbot.ipc import shm
from hftbot.process import HeartbeatTable, ProcessContext
from hftbot.sim.market import ModelParams
from hftbot.sim.process import from_config, main
from hftbot.sim.venue import Venue


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _changed(value):
    """A valid value other than the default, for any [sim] field."""
    alt = {"SOLUSDT": "BTCUSDT", "risk_averse": "proportional", "127.0.0.1": "127.0.0.2", 0.5: 0.75}
    if value in alt and not isinstance(value, bool):
        return alt[value]
    return value + 1 if isinstance(value, int) else value * 2 + 1.5


# how each [sim] setting shows in what the simulator is built from: a new field needs a line here,
# so a setting that reaches nothing fails this test (the config test keeps defaults.toml in step)
OBSERVED = {
    "host": lambda p, v, s: s.host,
    "port": lambda p, v, s: s.port,
    "seed": lambda p, v, s: p.seed,
    "symbol": lambda p, v, s: p.symbol,
    "start_price": lambda p, v, s: p.start_price,
    "rate_hz": lambda p, v, s: p.rate_hz,
    "predictability": lambda p, v, s: p.predictability,
    "signal_timescale_s": lambda p, v, s: p.signal_timescale_s,
    "update_id_gap": lambda p, v, s: v.engine.update_gap,
    "queue_model": lambda p, v, s: v.engine.queue.name,
    "maker_fee": lambda p, v, s: float(v.engine.fees.maker),
    "taker_fee": lambda p, v, s: float(v.engine.fees.taker),
    "wallet_usdt": lambda p, v, s: float(v.account.wallet),
    "leverage": lambda p, v, s: v.account.leverage,
    "order_latency_ms": lambda p, v, s: s.latency.order_entry.ns / 1e6,
    "market_data_latency_ms": lambda p, v, s: s.latency.market_data.ns / 1e6,
    **{
        f.name: (lambda name: lambda p, v, s: getattr(v.settings.faults, name.removeprefix("fault_")))(f.name)
        for f in dataclasses.fields(SimConfig)
        if f.name.startswith("fault_")
    },
}


def test_every_sim_setting_reaches_the_simulator() -> None:
    base = load_config(env={}).sim
    assert set(OBSERVED) == {f.name for f in dataclasses.fields(SimConfig)}
    changed = dataclasses.replace(
        base, **{f.name: _changed(getattr(base, f.name)) for f in dataclasses.fields(SimConfig)}
    )
    for sim in (base, changed):
        params, venue_settings, server = from_config(sim)
        venue = Venue(params, venue_settings)
        for name, seen in OBSERVED.items():
            want = getattr(sim, name)
            got = seen(params, venue, server)
            assert got == (want.upper() if name == "symbol" else want), (name, got, want)


def test_model_defaults_agree_with_the_sim_section() -> None:
    shared = {f.name for f in dataclasses.fields(ModelParams)} & {f.name for f in dataclasses.fields(SimConfig)}
    assert shared >= {"seed", "symbol", "start_price", "rate_hz", "predictability", "signal_timescale_s"}
    for name in shared:
        assert getattr(ModelParams(), name) == getattr(SimConfig(), name), name


def test_port_argument_overrides_the_section() -> None:
    _, _, server = from_config(load_config(env={}).sim, port=1234)
    assert server.port == 1234 and server.host == "127.0.0.1"


def test_process_serves_on_its_port_beats_and_stops() -> None:
    name = shm.segment_name(f"simtest{os.getpid()}")
    table = HeartbeatTable.create(name)
    port = free_port()
    ctx = ProcessContext(
        name="sim",
        slot=0,
        config=load_config(),
        segments={"heartbeats": name},
        endpoints={"sim_port": port},
        supervisor_pid=os.getppid(),
    )
    ctx.supervisor_pid = os.getppid()  # orphan check compares with our parent
    t = threading.Thread(target=main, args=(ctx,), daemon=True)
    t.start()
    try:
        deadline = time.time() + 15
        body = None
        while time.time() < deadline and body is None:
            try:
                body = requests.get(f"http://127.0.0.1:{port}/fapi/v1/time", timeout=1).json()
            except requests.ConnectionError:
                time.sleep(0.05)
        assert body is not None and "serverTime" in body
        time.sleep(0.5)
        counters = table.counters(0)
        assert counters["requests"] >= 1 and counters["events"] > 0 and table.rows[0]["beats"] > 0
    finally:
        ctx.request_stop()
        t.join(15)
        table.close()
        shm.unlink_segment(name)
    assert not t.is_alive()
