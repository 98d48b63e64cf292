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
from hftbot.ipc.ring import accelerator_missing
from hftbot.process import ProcessSpec
from hftbot.run import Supervisor

ROOT = Path(__file__).resolve().parents[2]
CAPTURE = ROOT / "tests" / "data" / "btcusdt_20240808.gz"
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
    assert summary["warnings"] == [w for w in (accelerator_missing(),) if w]  # nothing else to say


def test_a_ring_without_its_c_accelerator_is_a_warning_in_the_summary(monkeypatch, capsys):
    from hftbot.ipc import ring

    monkeypatch.setattr(ring, "PYTHON_FORCED", False)
    monkeypatch.setattr(ring, "_fastring", None)  # as an install that built no C extension
    sup = Supervisor(fast_config(), [spec("idle", "idle")], panel=False, endpoints={})
    assert sup.run(duration_s=0.5) == 0  # slower, not broken
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert any("C accelerator (hftbot.ipc._fastring) is not built" in w for w in summary["warnings"])
    monkeypatch.setattr(ring, "PYTHON_FORCED", True)  # HFTBOT_RING_PYTHON=1 asked for it: nothing to say
    assert ring.accelerator_missing() == ""


def test_a_process_the_os_will_not_start_fails_the_run_cleanly(monkeypatch, capsys):
    """A fork refused (here: the second child's start raises OSError) is a failed run with the
    reason, the first child stopped in order, nothing left in /dev/shm — not a crash of the stop."""
    sup = Supervisor(fast_config(), [spec("idle", "idle"), spec("never", "idle")], panel=False, endpoints={})
    real = sup.mp.Process

    def refuse():
        raise OSError(11, "Resource temporarily unavailable")

    def process(*args, **kwargs):
        p = real(*args, **kwargs)
        if kwargs.get("name") == "hftbot-never":
            p.start = refuse
        return p

    monkeypatch.setattr(sup.mp, "Process", process)
    rc = sup.run(duration_s=5)
    assert rc == 1 and sup.failed
    idle, never = sup.children
    assert never.proc is None and never.pids == []
    assert idle.state == "stopped" and idle.proc.exitcode == 0
    assert shm.list_segments(os.getpid()) == []
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    why = "never: the OS would not start its process ([Errno 11] Resource temporarily unavailable)"
    assert summary["failures"] == [why]
    assert summary["stop_reason"] == summary["failures"][0] and summary["failed"]


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


def test_non_critical_failure_does_not_stop_the_system_but_fails_the_run():
    sup = Supervisor(
        fast_config(max_restarts=1),
        [spec("idle", "idle"), spec("crasher", "crash_after_start", critical=False)],
        panel=False,
        endpoints={},
    )

    def stop_a_second_after_the_failure():
        deadline = time.monotonic() + 60
        while sup.children[1].state != "failed" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # the run goes on without it
        sup.stop_reason = "test done"

    t = threading.Thread(target=stop_a_second_after_the_failure)
    t.start()
    assert sup.run(duration_s=90) == 1  # a crash loop is a failure, even of a process we can spare
    t.join()
    assert sup.children[1].state == "failed" and sup.children[0].state == "stopped"
    assert sup.stop_reason == "test done"
    assert [f for f in sup.failures if f.startswith("crasher: exited with code 1; restart limit")]


def test_sigkill_of_a_child_restarts_it_and_segments_survive_until_exit():
    sup = Supervisor(fast_config(), [spec("reporter", "serving_reporter")], panel=False, endpoints={})
    killed = []

    def killer():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            c = sup.children[0]
            if c.state == "running" and c.serving_seen:
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
    back = sup.summary()["serving"]["reporter"]
    assert back["start_s"] is not None and len(back["restart_s"]) == 1
    assert 0.2 < back["restart_s"][0] < 5.0  # backoff + spawn + its 0.2 s to serving, measured


def test_silent_process_is_killed_and_restarted_after_heartbeat_timeout():
    sup = Supervisor(
        fast_config(heartbeat_s=0.1, heartbeat_timeout_s=0.5, max_restarts=1),
        [spec("idle", "idle"), spec("silent", "silent", critical=False)],
        panel=False,
        endpoints={},
    )
    sup.run(duration_s=8)
    silent = sup.children[1]
    assert silent.restarts >= 1
    assert silent.exit_codes[0] == -signal.SIGKILL


def test_process_ignoring_stop_is_killed_on_shutdown_and_fails_the_run():
    sup = Supervisor(
        fast_config(stop_timeout_s=0.5), [spec("stubborn", "stubborn")], panel=False, endpoints={}
    )
    t0 = time.monotonic()
    assert sup.run(duration_s=0.5) == 1
    assert time.monotonic() - t0 < 30
    assert sup.children[0].proc.exitcode == -signal.SIGKILL
    assert any(f.startswith("stubborn: did not stop within") and "killed" in f for f in sup.failures)
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


def wait_ready(proc: subprocess.Popen, n: int = 2, timeout: float = 60) -> None:
    """Until all n children beat (rows of the supervisor's heartbeat table) and the book ring has
    records."""
    from hftbot.ipc.ring import Ring
    from hftbot.process import HeartbeatTable

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(shm.list_segments(proc.pid)) == 6:  # five rings and the heartbeat table
            try:
                table = HeartbeatTable.attach(shm.segment_name("heartbeats", proc.pid))
                ring = Ring.attach(shm.segment_name("book", proc.pid))
            except FileNotFoundError:
                continue
            beating = int((table.rows["beat_ns"][:n] > 0).sum())
            records = ring.write_seq
            table.close()
            ring.close()
            if beating == n and records > 5:
                return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
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
    _, err = proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and shm.list_segments(proc.pid):
        time.sleep(0.1)
    assert shm.list_segments(proc.pid) == [], err[-3000:]


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


def test_status_panel_fits_80_columns_and_shows_each_process_state_and_counters():
    from rich.console import Console

    sup = Supervisor(fast_config(), [spec("ticker", "ticker"), spec("long-name-x", "counts_at_stop")],
                     panel=True, endpoints={})
    assert sup.run(duration_s=1.5) == 0
    for width in (200, 80):
        console = Console(record=True, width=width)
        console.print(sup.render())
        text = console.export_text()
        lines = text.splitlines()
        assert max(map(len, lines)) <= 80, "\n".join(lines)
        assert "ticker" in text and "stopped" in text and "published=" in text and "items=" in text
        assert "rings: book" in text


def test_only_restarts_inside_the_window_count_towards_the_cap(tmp_path):
    # three crashes, each > 1 s after the last, then healthy until the stop (never a crash at it)
    sup = Supervisor(
        fast_config(max_restarts=1, restart_window_s=1.0),
        [spec("crasher", "crash_later")],
        panel=False,
        endpoints={"crash_count_file": str(tmp_path / "spawns"), "crashes": 3},
    )
    assert sup.run(duration_s=6) == 0
    crasher = sup.children[0]
    assert crasher.restarts == 3 and crasher.state == "stopped"  # a cap of 1 never tripped


def test_registry_start_order_per_mode():
    from hftbot.processes import processes_for

    sim = [s.name for s in processes_for(load_config(env={}))]
    # the venue listens before the feed connects; execution trades on the feed's books
    assert sim == ["sim", "feed", "recorder", "inference", "execution"]
    replay_cfg = load_config(env={"HFTBOT_RUNTIME__MODE": "replay", "HFTBOT_REPLAY__PATH": str(CAPTURE)})
    replay = processes_for(replay_cfg)
    # readers wait for the replay; orders go to the mirror venue, which follows the replayed book
    assert [s.name for s in replay] == ["recorder", "inference", "venue", "execution", "feed"]
    assert replay[-1].entry == "hftbot.feed.replay:main"
    off = load_config(
        env={"HFTBOT_RECORDER__ENABLED": "false", "HFTBOT_INFERENCE__ENABLED": "false", "HFTBOT_EXEC__STRATEGY": "none"}
    )
    assert [s.name for s in processes_for(off)] == ["sim", "feed"]


# ----------------------------------------------------------------------------------- signals
SPEC_SCRIPT = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, {root!r})
    from hftbot.config import load_config
    from hftbot.process import ProcessSpec, configure_logging
    from hftbot.run import Supervisor

    if __name__ == "__main__":
        configure_logging("INFO", "supervisor")
        specs, runtime = json.loads(sys.argv[1])
        cfg = load_config(env={{}}).override("runtime", **runtime)
        specs = [ProcessSpec(n, e, stop_rank=r) for n, e, r in specs]
        sys.exit(Supervisor(cfg, specs, panel=False, endpoints={{}}).run(ignore_late_signals=True))  # as main()
    """
)


def start_supervisor(tmp_path: Path, specs, runtime=None, new_session=False) -> subprocess.Popen:
    script = tmp_path / "sup_specs.py"
    script.write_text(SPEC_SCRIPT.format(root=str(ROOT)))
    return subprocess.Popen(
        [sys.executable, str(script), json.dumps([specs, runtime or {"stop_timeout_s": 3.0}])],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=new_session,
    )


def stop_order(err: str) -> list[str]:
    return [line.split("supervisor: ")[1].split()[0] for line in err.splitlines() if "stopped (exit code" in line]


def gone(pid: int) -> bool:
    """No process (not even a zombie) has this pid."""
    return not Path(f"/proc/{pid}").exists()


STANDIN = [["ticker", "tests.runtime.procs:ticker", 20], ["idle", "tests.runtime.procs:idle", 10],
           ["drainer", "tests.runtime.procs:counts_at_stop", 30]]


@pytest.mark.parametrize(
    "when, signals",
    [
        ("starting", [signal.SIGINT]),  # before every process is up
        ("ready", [signal.SIGINT, signal.SIGINT]),  # the second Ctrl-C of the issue: it hung
        ("ready", [signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGINT]),
    ],
    ids=["during-start", "double-ctrl-c", "burst-of-five"],
)
def test_any_number_of_signals_at_any_moment_end_in_the_ordered_stop(tmp_path, when, signals):
    proc = start_supervisor(tmp_path, STANDIN)
    try:
        if when == "ready":
            wait_ready(proc, n=3)
        else:
            deadline = time.monotonic() + 60
            while not shm.list_segments(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
        for sig in signals:
            proc.send_signal(sig)
            time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    summary = json.loads(out.strip().splitlines()[-1])
    # the later signals of a burst may find it gone: a third one kills what is left at once
    assert summary["stop_reason"] == signals[0].name and min(3, len(signals)) <= summary["signals"] <= len(signals)
    started = [n for n, p in summary["processes"].items() if p["pids"]]
    assert stop_order(err) == [n for n in ("idle", "ticker", "drainer") if n in started]
    assert proc.returncode == (1 if summary["failures"] else 0)
    assert all("killed" in f or "terminated" in f for f in summary["failures"])
    if len(signals) == 2:  # a hurried stop still lets each group stop by itself within a second
        assert proc.returncode == 0 and summary["processes"]["drainer"]["drained"] == 1
    assert all(gone(pid) for p in summary["processes"].values() for pid in p["pids"])
    assert shm.list_segments(proc.pid) == []


def test_process_group_sigterm_reaches_only_the_supervisor_which_stops_in_order(tmp_path):
    """systemd's stop: SIGTERM to every process of the group. The children have groups of their
    own, so the supervisor alone decides the order (and the drainer still drains)."""
    proc = start_supervisor(tmp_path, STANDIN, new_session=True)
    try:
        wait_ready(proc, n=3)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["stop_reason"] == "SIGTERM" and summary["signals"] == 1
    assert stop_order(err) == ["idle", "ticker", "drainer"]
    assert summary["processes"]["drainer"]["drained"] == 1 and summary["processes"]["drainer"]["items"] >= 25
    assert all(p["exit_codes"][-1] == 0 for p in summary["processes"].values())
    assert shm.list_segments(proc.pid) == []


# ----------------------------------------------------------------------------------- helpers
@pytest.mark.parametrize("how", ["kill-9", "heartbeat-timeout"])
def test_a_process_helpers_die_with_it_and_are_reaped(how):
    """The helper is a plain `sleep` (no parent-death signal of its own): the supervisor kills
    the child's whole process group and reaps what was re-parented to it."""
    func = "with_helper" if how == "kill-9" else "silent_with_helper"
    sup = Supervisor(fast_config(heartbeat_s=0.1, heartbeat_timeout_s=0.5, max_restarts=3),
                     [spec("helped", func, critical=False)], panel=False, endpoints={})
    helpers: list[int] = []
    errors: list[str] = []

    def fault():
        deadline = time.monotonic() + 40
        try:
            while time.monotonic() < deadline and len(helpers) < 2:
                c = sup.children[0]
                h = sup.table.counters(0).get("helper") if sup.table is not None and c.state == "running" else 0
                if h and h not in helpers:
                    helpers.append(h)
                    if how == "kill-9":
                        os.kill(c.proc.pid, signal.SIGKILL)
                time.sleep(0.05)
            sup.stop_reason = "test done"
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    t = threading.Thread(target=fault)
    t.start()
    sup.run(duration_s=45)
    t.join()
    assert not errors and len(helpers) == 2, (errors, helpers)
    assert sup.children[0].restarts >= 1
    assert all(gone(h) for h in helpers), [(h, Path(f"/proc/{h}/stat").read_text()) for h in helpers if not gone(h)]
    assert not any(f.startswith("processes left") for f in sup.failures)


def test_each_process_names_itself_in_ps(tmp_path):
    sup = Supervisor(fast_config(), [spec("idle", "idle"), spec("ticker", "ticker")], panel=False, endpoints={})
    names: dict[str, tuple[str, str]] = {}

    def look():
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(names) < 2:
            for c in sup.children:
                if c.state == "running" and c.spec.name not in names:
                    pid = c.proc.pid
                    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode()
                    names[c.spec.name] = (cmd, Path(f"/proc/{pid}/comm").read_text().strip())
            time.sleep(0.05)
        sup.stop_reason = "test done"

    t = threading.Thread(target=look)
    t.start()
    sup.run(duration_s=40)
    t.join()
    assert names == {"idle": ("hftbot: idle", "hftbot: idle"), "ticker": ("hftbot: ticker", "hftbot: ticker")}


# ----------------------------------------------------------------------------------- exit status
def test_summary_shows_final_counters_not_the_last_heartbeat(capsys):
    sup = Supervisor(fast_config(), [spec("drainer", "counts_at_stop")], panel=False, endpoints={})
    assert sup.run(duration_s=1.0) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["processes"]["drainer"]["drained"] == 1  # reported after the stop request


def test_a_run_that_served_no_model_warns_naming_the_checkpoint_folder_in_full(capsys, tmp_path, monkeypatch):
    """`checkpoints_dir` is relative by default: read from where the run started, which the warning
    must say (a run started outside the repository finds no shipped checkpoint)."""
    monkeypatch.chdir(tmp_path)
    sup = Supervisor(fast_config(checkpoints_dir="checkpoints"), [spec("inference", "no_model")], panel=False,
                     endpoints={})
    assert sup.run(duration_s=1.0) == 0  # a warning, not a failure
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [w for w in summary["warnings"] if w != accelerator_missing()] == [
        f"inference: served no model (no checkpoint verified in {tmp_path / 'checkpoints'})"]


def test_a_finished_process_ends_the_run_without_a_restart():
    sup = Supervisor(fast_config(), [spec("idle", "idle"), spec("finisher", "finisher")], panel=False,
                     endpoints={})
    assert sup.run(duration_s=30) == 0
    f = sup.children[1]
    assert f.state == "finished" and f.restarts == 0 and f.exit_codes == [0]
    assert sup.stop_reason == "finisher finished" and f.counters["done"] == 1
    assert sup.children[0].state == "stopped"


def test_a_feed_that_never_gets_market_data_fails_the_run(capsys):
    """The paper-mode-without-network case: the real feed process against a port nobody serves."""
    port = free_tcp_port()
    cfg = fast_config(start_timeout_s=60.0)
    endpoints = {"rest": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}", "ws_api": ""}
    sup = Supervisor(cfg, [ProcessSpec("feed", "hftbot.feed.process:main")], panel=False, endpoints=endpoints)
    assert sup.run(duration_s=3.0) == 1
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["failed"] is True
    assert "feed: never received market data (no synced book was published)" in summary["failures"]
    assert summary["processes"]["feed"]["state"] == "stopped"  # it kept retrying, and stopped when asked


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------------- CLI checks
@pytest.mark.parametrize(
    "argv, env, expected",
    [
        (["--duration", "-5"], {}, "config: --duration must be a finite number > 0, got '-5' (from command line)"),
        (["--duration", "nan"], {}, "config: --duration must be a finite number > 0, got 'nan' (from command line)"),
        (["--duration", "0"], {}, "config: --duration must be a finite number > 0, got '0' (from command line)"),
        (["--replay", "/nonexistent/rec", "--speed", "0"], {},
         "config: replay.path must exist in mode 'replay' (a recording folder or file, or a .gz capture), "
         "got replay.path = '/nonexistent/rec' (from command line)"),
        (["--speed", "inf"], {}, "config: --speed must be a finite number, got 'inf' (from command line)"),
        ([], {"HFTBOT_RUNTIME_MODE": "x"},
         "config: unknown environment variable HFTBOT_RUNTIME_MODE; did you mean HFTBOT_RUNTIME__MODE?"),
        ([], {"HFTBOT_RUNTIME__HEARTBEAT_S": "nan"},
         "config: runtime.heartbeat_s must be a finite number, got nan (from environment HFTBOT_RUNTIME__HEARTBEAT_S)"),
        ([], {"HFTBOT_RUNTIME__HEARTBEAT_S": "inf"},
         "config: runtime.heartbeat_s must be a finite number, got inf (from environment HFTBOT_RUNTIME__HEARTBEAT_S)"),
        ([], {"HFTBOT_RUNTIME__HEARTBEAT_TIMEOUT_S": "0.2"},
         "config: runtime.heartbeat_timeout_s must be >= 2 x runtime.heartbeat_s, got runtime.heartbeat_timeout_s"
         " = 0.2 (from environment HFTBOT_RUNTIME__HEARTBEAT_TIMEOUT_S) and runtime.heartbeat_s = 0.5 (from defaults)"),
        ([], {"HFTBOT_RUNTIME__HEARTBEAT_S": ""},
         "config: runtime.heartbeat_s is empty (from environment HFTBOT_RUNTIME__HEARTBEAT_S); give a value or "
         "unset the variable"),
    ],
)
def test_every_bad_setting_is_one_line_naming_field_value_and_source(monkeypatch, capsys, argv, env, expected):
    from hftbot.run import main

    for k in [k for k in os.environ if k.startswith("HFTBOT_")]:
        monkeypatch.delenv(k)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err == expected + "\n"


def test_a_replay_of_a_folder_mixing_symbols_is_refused_before_anything_starts(tmp_path, capsys):
    from hftbot.feed.recording import RawRecordingWriter
    from hftbot.run import main

    for sym in ("BTCUSDT", "SOLUSDT"):
        with RawRecordingWriter(tmp_path, sym, source="binance") as w:
            w.append(1_723_161_255_000_000_000, f"{sym.lower()}@depth@100ms", "{}")
    assert main(["--replay", str(tmp_path), "--duration", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"config: replay.path '{tmp_path}' cannot be replayed: recordings mix symbols BTCUSDT, SOLUSDT")
    assert "\n" not in err
