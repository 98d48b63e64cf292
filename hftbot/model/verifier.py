"""The checkpoint-verify helper process of inference: TorchScript loading off the serving GIL.

One spawned process, driven over a pipe (`verify(target, compat) -> LoadedCheckpoint`), that
dies with its parent: it asks the kernel for SIGKILL when the inference process dies
(`PR_SET_PDEATHSIG`, so it must be started from the inference's main thread, see
`hftbot.linux.set_parent_death_signal`), and it runs in its parent's process group, which the
supervisor kills as a whole after any exit of the inference. A kill -9 of inference, a heartbeat
timeout or a crash therefore never leaves it behind.

Why not `concurrent.futures.ProcessPoolExecutor`: its queues are POSIX semaphores
(`/dev/shm/sem.mp-*`), which a killed pool leaves behind, and its worker is forked from whichever
thread submits first (the loader thread, whose exit would fire the parent-death signal). A pipe
needs neither.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from hftbot.model.checkpoint import CheckpointError, Compat, LoadedCheckpoint


def _serve(conn: Connection, parent_pid: int) -> None:
    """The helper's loop: (target, compat, threads) in, ("ok", ckpt) / ("error", text) out; None
    stops."""
    from hftbot.linux import set_parent_death_signal, set_process_name

    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)
    set_process_name("hftbot: verify")
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(10)  # on a small machine the scheduler should prefer the update loop
    from hftbot.model.engine import load_for_serving

    while True:
        try:
            req = conn.recv()
        except EOFError:
            return
        if req is None:
            return
        target, compat, threads = req
        try:
            conn.send(("ok", load_for_serving(target, compat, threads)))
        except CheckpointError as e:
            conn.send(("error", str(e)))
        except Exception as e:  # the caller reports it; the helper keeps serving
            conn.send(("error", f"checkpoint {Path(target).name} refused: {type(e).__name__}: {e}"))


class VerifyWorker:
    """A helper process that loads and verifies checkpoints; one request at a time."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, os.getpid()), name="hftbot-verify", daemon=True)
        self.proc.start()
        child.close()

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def alive(self) -> bool:
        return self.proc.is_alive()

    def verify(self, target: Path, compat: Compat, timeout_s: float = 600.0, threads: int = 1) -> LoadedCheckpoint:
        """Load and verify `target` in the helper; CheckpointError on refusal, RuntimeError when the
        helper is gone or silent (the caller starts a new one)."""
        try:
            self._conn.send((target, compat, threads))
            if not self._conn.poll(timeout_s):
                raise RuntimeError(f"verify helper (pid {self.pid}) gave no answer within {timeout_s:g} s")
            kind, value = self._conn.recv()
        except (EOFError, OSError, BrokenPipeError) as e:
            raise RuntimeError(f"verify helper (pid {self.pid}) is gone: {type(e).__name__}") from e
        if kind == "error":
            raise CheckpointError(value)
        return value

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the helper (asked, then killed) and reap it."""
        try:
            self._conn.send(None)
        except (OSError, BrokenPipeError):
            pass
        self.proc.join(timeout_s)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout_s)
        self._conn.close()

    def __enter__(self) -> VerifyWorker:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
