"""The simulator as a supervised process: serves on the given port, beats, stops when asked."""

from __future__ import annotations

import os
import socket
import threading
import time

import requests

from hftbot.config import load_config
from hftbot.ipc import shm
from hftbot.process import HeartbeatTable, ProcessContext
from hftbot.sim.process import from_config, main


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_config_section_maps_onto_the_simulator() -> None:
    cfg = load_config()
    params, venue, server = from_config(cfg.sim, port=1234)
    assert params.symbol == cfg.sim.symbol and params.seed == cfg.sim.seed
    assert params.predictability == cfg.sim.predictability
    assert str(venue.taker_fee) == "0.0005" and venue.queue_model.name == cfg.sim.queue_model
    assert server.port == 1234 and venue.faults.drop_diff_every == cfg.sim.fault_drop_diff_every


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
