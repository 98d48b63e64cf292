"""The supervisor with real spawned processes: restarts, heartbeats, ordered shutdown, cleanup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from hftbot.config import load_config
from hftbot.ipc import shm
from hftbot.process import ProcessSpec
from hftbot.run import Supervisor

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def fast_config(**runtime):
    base = dict(
        restart_backoff_s=0.05,
        restart_backoff_max_s=0.2,
        max_restarts=2,
        heartbeat_timeout_s=2.0,
        stop_timeout_s=2.0,
        start_timeout_s=30.0,
    )
    base.update(runtime)
    return load_config(env={}).override("runtime", **base)


def spec(name, func, **kw):
    return ProcessSpec(name, f"tests.runtime.procs:{func}", **kw)


def test_run_publishes_and_shutdown_leaves_nothing_in_dev_shm(capsys):
    sup = Supervisor(
        fast_config(), [spec("ticker", "ticker"), spec("idle", "idle")], panel=False, endpoints={}
    )
    assert sup.run(duration_s=1.5) == 0
    assert shm.list_segments(os.getpid()) == []
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["processes"]["ticker"]["published"] > 10
    assert summary["rings"]["book"]["records"] == summary["processes"]["ticker"]["published"]
    assert summary["latency_us"]["feed_us"]["n"] > 0
    assert all(p["state"] == "stopped" and p["restarts"] == 0 for p in summary["processes"].values())


def test_crashing_process_is_restarted_with_backoff_up_to_the_cap():
    cfg = fast_config(max_restarts=2)
    sup = Supervisor(
        cfg, [spec("idle", "idle"), spec("crasher", "crash_after_start")], panel=False, endpoints={}
    )
    rc = sup.run(duration_s=30)  # a critical process past its cap ends the run early
    crasher = sup.children[1]
    assert crasher.restarts == 2 and crasher.state == "failed"
    assert crasher.exit_codes[:3] == [1, 1, 1]
    assert rc == 1 and sup.failed and "crasher failed" in sup.stop_reason
    assert shm.list_segments(os.getpid()) == []


def test_non_critical_failure_does_not_stop_the_system():
    sup = Supervisor(
        fast_config(max_restarts=1),
        [spec("idle", "idle"), spec("crasher", "crash_after_start", critical=False)],
        panel=False,
        endpoints={},
    )

    assert sup.run(duration_s=4) == 0
    assert sup.children[1].state == "failed" and sup.children[0].state == "stopped"
    assert sup.stop_reason.startswith("duration")


def test_sigkill_of_a_child_restarts_it_and_segments_survive_until_exit():
    sup = Supervisor(fast_config(), [spec("reporter", "pid_reporter")], panel=False, endpoints={})
    killed = []

    def killer():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            c = sup.children[0]
            if c.state == "running":
                killed.append(c.proc.pid)
                os.kill(c.proc.pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    t = threading.Thread(target=killer)
    t.start()
    seen_segments = []

    def watch():
        time.sleep(4)
        seen_segments.extend(shm.list_segments(os.getpid()))

    w = threading.Thread(target=watch)
    w.start()
    assert sup.run(duration_s=8) == 0
    t.join()
    w.join()
    assert killed, "the child never became ready"
    assert sup.children[0].restarts == 1
    assert sup.children[0].exit_codes[0] == -signal.SIGKILL
    assert sup.children[0].proc.pid != killed[0]
    assert len(seen_segments) == 6  # the five rings and the heartbeat table stayed while it restarted
    assert shm.list_segments(os.getpid()) == []


def test_silent_process_is_killed_and_restarted_after_heartbeat_timeout():
    sup = Supervisor(
        fast_config(heartbeat_timeout_s=0.5, max_restarts=1),
        [spec("idle", "idle"), spec("silent", "silent", critical=False)],
        panel=False,
        endpoints={},
    )
    sup.run(duration_s=8)
    silent = sup.children[1]
    assert silent.restarts >= 1
    assert silent.exit_codes[0] == -signal.SIGKILL


def test_process_ignoring_stop_is_killed_on_shutdown():
    sup = Supervisor(
        fast_config(stop_timeout_s=0.5), [spec("stubborn", "stubborn")], panel=False, endpoints={}
    )
    t0 = time.monotonic()
    sup.run(duration_s=0.5)
    assert time.monotonic() - t0 < 30
    assert sup.children[0].proc.exitcode == -signal.SIGKILL
    assert shm.list_segments(os.getpid()) == []


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {root!r})
    from hftbot.config import load_config
    from hftbot.process import ProcessSpec, configure_logging
    from hftbot.run import Supervisor

    if __name__ == "__main__":
        configure_logging("INFO", "supervisor")
        cfg = load_config(env={{}}).override("runtime", stop_timeout_s=3.0)
        specs = [ProcessSpec("ticker", "tests.runtime.procs:ticker", stop_rank=20),
                 ProcessSpec("idle", "tests.runtime.procs:idle", stop_rank=10)]
        sys.exit(Supervisor(cfg, specs, panel=False, endpoints={{}}).run())
    """
)


def start_script(tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "sup.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    return subprocess.Popen(
        [sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_ready(proc: subprocess.Popen, timeout: float = 60) -> None:
    """Until both children beat (the book ring has records and the table shows two pids)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(shm.list_segments(proc.pid)) == 6:  # five rings and the heartbeat table
            from hftbot.ipc.ring import Ring

            ring = Ring.attach(shm.segment_name("book", proc.pid))
            n = ring.write_seq
            ring.close()
            if n > 5:
                time.sleep(1.5)  # let the second child start too
                return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    raise AssertionError("supervisor did not get ready")


def test_sigint_shuts_down_in_stop_rank_order_and_cleans_up(tmp_path):
    proc = start_script(tmp_path)
    wait_ready(proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    stops = [line for line in err.splitlines() if "stopped (exit code" in line]
    assert [s.split("supervisor: ")[1].split()[0] for s in stops] == ["idle", "ticker"]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "SIGINT"
    assert shm.list_segments(proc.pid) == []


def test_sigkill_of_supervisor_children_stop_and_remove_its_segments(tmp_path):
    proc = start_script(tmp_path)
    wait_ready(proc)
    proc.kill()
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and shm.list_segments(proc.pid):
        time.sleep(0.1)
    assert shm.list_segments(proc.pid) == []


def test_cli_rejects_bad_config_naming_the_field(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[ring]\nwait = 'nap'\n")
    r = subprocess.run(
        [sys.executable, "-m", "hftbot.run", "--config", str(bad), "--duration", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "ring.wait must be one of" in r.stderr and str(bad) in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "hftbot.run", "--mode", "live"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "live_confirm" in r.stderr


def test_status_panel_shows_each_process_state_and_counters():
    from rich.console import Console

    sup = Supervisor(fast_config(), [spec("ticker", "ticker")], panel=True, endpoints={})
    assert sup.run(duration_s=1.5) == 0
    console = Console(record=True, width=160)
    console.print(sup.render())
    text = console.export_text()
    assert "ticker" in text and "stopped" in text and "published=" in text
    assert "rings book:" in text


def test_only_restarts_inside_the_window_count_towards_the_cap():
    sup = Supervisor(
        fast_config(max_restarts=1, restart_window_s=1.0),
        [spec("crasher", "crash_later")],
        panel=False,
        endpoints={},
    )
    assert sup.run(duration_s=7) == 0
    crasher = sup.children[0]
    assert crasher.restarts >= 2 and crasher.state == "stopped"  # each crash came > 1 s after the last


def test_registry_start_order_per_mode():
    from hftbot.processes import processes_for

    sim = [s.name for s in processes_for(load_config(env={}))]
    # the venue listens before the feed connects; execution trades on the feed's books
    assert sim == ["sim", "feed", "recorder", "inference", "execution"]
    replay_cfg = load_config(env={"HFTBOT_RUNTIME__MODE": "replay", "HFTBOT_REPLAY__PATH": "x.gz"})
    replay = processes_for(replay_cfg)
    # readers wait for the replay; orders go to the mirror venue, which follows the replayed book
    assert [s.name for s in replay] == ["recorder", "inference", "venue", "execution", "feed"]
    assert replay[-1].entry == "hftbot.feed.replay:main"
    off = load_config(
        env={"HFTBOT_RECORDER__ENABLED": "false", "HFTBOT_INFERENCE__ENABLED": "false", "HFTBOT_EXEC__STRATEGY": "none"}
    )
    assert [s.name for s in processes_for(off)] == ["sim", "feed"]
