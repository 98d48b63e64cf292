"""Auto-retrain: `python training/train.py --watch --every 6h ...`.

Every period the watcher runs one ordinary training run (the same command without `--watch`) in
a child process — on the newest recordings (`[model] train_days` bounds how far back), through
the promotion gate, promoting or not — then deletes checkpoints older than
`[model] retire_after_days`, never the one `CURRENT` names and never one written in this cycle.
A child that fails is reported and the watcher goes on to the next period: a bad hour of data
never stops retraining. The child is a process of its own so each run starts from a clean memory
state and a crash stays inside it.

`parse_every`, `retire` and `child_argv` are pure or plain file work; `watch` is the loop.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from hftbot.model.checkpoint import CheckpointError, read_pointer

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_EVERY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_every(text: str) -> float:
    """'6h', '30m', '90s', '1d' or plain seconds → seconds (> 0)."""
    m = _EVERY_RE.match(str(text))
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"retrain: --every must be a positive duration like 6h, 30m, 90s, got {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def child_argv(argv: list[str]) -> list[str]:
    """The training command without the watcher's own flags."""
    out, skip = [], False
    for i, a in enumerate(argv):
        if skip:
            skip = False
            continue
        if a == "--watch":
            continue
        if a in ("--every", "--watch-runs"):
            skip = i + 1 < len(argv)
            continue
        if a.startswith(("--every=", "--watch-runs=")):
            continue
        out.append(a)
    return out


def _created(meta_path: Path) -> float:
    """The checkpoint's creation time (its metadata's `created_utc`, else the file's mtime), epoch s."""
    try:
        text = json.loads(meta_path.read_text())["created_utc"]
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return meta_path.stat().st_mtime


def retire(directory: Path, older_than_days: float, keep: set[str] = frozenset(), now: float | None = None,
           log: Callable[[str], None] = print) -> list[Path]:
    """Delete `deeplob-*.json` checkpoints (and their .pt) older than the age; never CURRENT's or `keep`."""
    if older_than_days <= 0 or not directory.is_dir():
        return []
    now = time.time() if now is None else now
    try:
        current = read_pointer(directory)
    except CheckpointError as e:
        log(f"retrain: not retiring anything: {e}")  # cannot tell which one serves: keep all
        return []
    protected = set(keep) | ({current.name} if current is not None else set())
    gone = []
    for meta in sorted(directory.glob("deeplob-*.json")):
        if meta.name in protected or now - _created(meta) < older_than_days * 86400:
            continue
        try:
            model_file = json.loads(meta.read_text()).get("model_file", meta.with_suffix(".pt").name)
        except (OSError, ValueError):
            model_file = meta.with_suffix(".pt").name
        pt = directory / Path(str(model_file)).name
        pt.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)
        gone.append(meta)
        log(f"retrain: retired {meta.name} (older than {older_than_days:g} days)")
    return gone


def watch(argv: list[str], every: str | float, out_dir: Path, retire_after_days: float, *, script: Path,
          max_runs: int = 0, sleep: Callable[[float], None] = time.sleep, log: Callable[[str], None] = print) -> int:
    """Retrain, gate, promote, retire; every `every`, until `max_runs` (0: forever) or Ctrl-C."""
    period = parse_every(every) if isinstance(every, str) else float(every)
    cmd = [sys.executable, str(script), *child_argv(argv)]
    runs = failures = 0
    log(f"retrain: every {period:g} s: {' '.join(cmd)}")
    try:
        while True:
            t0 = time.monotonic()
            before = {p.name for p in out_dir.glob("deeplob-*.json")} if out_dir.is_dir() else set()
            rc = subprocess.run(cmd, check=False).returncode
            runs += 1
            if rc != 0:
                failures += 1
                log(f"retrain: run {runs} failed (exit {rc}); next attempt in {period:g} s")
            new = {p.name for p in out_dir.glob("deeplob-*.json")} - before if out_dir.is_dir() else set()
            retire(out_dir, retire_after_days, keep=new, log=log)
            if max_runs and runs >= max_runs:
                break
            sleep(max(0.0, period - (time.monotonic() - t0)))
    except KeyboardInterrupt:
        log("retrain: stopped")
    return 1 if failures and failures == runs else 0
