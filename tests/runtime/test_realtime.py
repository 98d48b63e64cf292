"""Real-time priority for the tick-to-order path: when it applies, and that only the asking thread gets it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from hftbot.config import load_config
from hftbot.process import realtime_reason


@pytest.mark.parametrize(
    "env, why",
    [
        ({}, ""),
        ({"HFTBOT_RUNTIME__MODE": "paper"}, ""),
        ({"HFTBOT_RUNTIME__REALTIME": "false"}, "runtime.realtime = false"),
        ({"HFTBOT_RING__WAIT": "spin"}, 'ring.wait = "spin"'),
        ({"mode": "replay"}, "replay mode"),
    ],
)
def test_realtime_applies_only_where_the_processes_sleep_between_records(env, why) -> None:
    cfg = load_config(env={k: v for k, v in env.items() if k.startswith("HFTBOT_")})
    if "mode" in env:  # replay needs a recording to load; the rule reads the mode only
        cfg = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, mode=env["mode"]))
    assert realtime_reason(cfg) == why


CHILD = """
import json, threading
from hftbot import linux
why = linux.set_realtime(2)
seen = {}
t = threading.Thread(target=lambda: seen.update(t=linux.thread_policy()))
t.start(); t.join()
print(json.dumps([why, linux.thread_policy(), seen["t"]]))
"""


def test_only_the_thread_that_asked_runs_real_time() -> None:
    """In a child process (this one stays normal): SCHED_FIFO for the main thread, and a thread
    born after it is SCHED_OTHER (SCHED_RESET_ON_FORK); where not permitted, a reason and no change."""
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True).stdout
    why, main, thread = json.loads(out)
    if why:
        assert "not permitted" in why and main == thread == [os.SCHED_OTHER, 0]
    else:
        assert main == [os.SCHED_FIFO, 2] and thread == [os.SCHED_OTHER, 0]
