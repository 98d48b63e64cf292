"""Fixtures: a real simulator server on 127.0.0.1, run on its own event loop in a thread, and the
`python -m hftbot.sim serve` command itself in a child process (`served`).

Sync clients (requests, the Binance connector, ccxt) and async ones (websockets) can then talk to
it the way they talk to Binance. Every server is stopped and its thread joined (or its process
stopped by pid) at teardown.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from hftbot.sim.market import ModelParams
from hftbot.sim.matching import warm_up
from hftbot.sim.server import ServerSettings, SimServer
from hftbot.sim.venue import VenueSettings


class ServerThread:
    """A SimServer running on a private loop; `call(coro)` runs a coroutine on that loop."""

    def __init__(self, params: ModelParams, venue: VenueSettings | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.server = SimServer(params, venue, ServerSettings())
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self._run, name="sim-server", daemon=True)
        self.thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("simulator server did not start in 30 s")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main() -> None:
            self._stop = asyncio.Event()
            await self.server.start()
            self._ready.set()
            await self._stop.wait()
            await self.server.stop()

        self.loop.run_until_complete(main())
        self.loop.close()

    def call(self, fn, *args):
        """Run a plain function on the server's loop (venue state is not thread-safe)."""

        async def wrap():
            return fn(*args)

        return asyncio.run_coroutine_threadsafe(wrap(), self.loop).result(30)

    @property
    def urls(self) -> dict[str, str]:
        return self.server.urls

    @property
    def venue(self):
        return self.server.venue

    def close(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(15)


@pytest.fixture(scope="session", autouse=True)
def matching_kernels_compiled() -> None:
    """Compile (or load) the matching kernels once, before any test starts a simulator on a clock
    (a cold numba cache takes about a minute on a small core; every later process loads it)."""
    warm_up()


def start_server(**kw) -> ServerThread:
    venue = kw.pop("venue", None)
    params = ModelParams(**{"rate_hz": 200.0, "seed": 7, **kw})
    return ServerThread(params, venue)


@pytest.fixture
def sim() -> Iterator[ServerThread]:
    st = start_server()
    try:
        yield st
    finally:
        st.close()


class ServeProcess:
    """`python -m hftbot.sim serve --port 0`, as a user starts it; URLs read from what it prints."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hftbot.sim", "serve", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.printed: list[str] = []
        deadline = time.monotonic() + 60
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.printed.append(line)
            if m := re.search(r"listening on ([\d.]+):(\d+)", line):
                host, port = m.group(1), int(m.group(2))
                self.urls = {
                    "rest": f"http://{host}:{port}",
                    "ws": f"ws://{host}:{port}",
                    "ws_api": f"ws://{host}:{port}/ws-fapi/v1",
                }
                return
        self.close()
        raise RuntimeError(f"sim serve did not print its URL: {''.join(self.printed)!r}")

    def status(self) -> dict:
        return requests.get(self.urls["rest"] + "/sim/status", timeout=5).json()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C: the documented way to stop it
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def served() -> Iterator[ServeProcess]:
    p = ServeProcess()
    try:
        yield p
    finally:
        p.close()
