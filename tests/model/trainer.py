"""Run the real trainer script as its own process, as a user would, on tiny settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "training" / "train.py"
TINY = ["--window", "30", "--conv-filters", "4", "--inception-filters", "8", "--lstm-hidden", "8",
        "--horizon", "20", "--threshold", "0.5", "--epochs", "1", "--epoch-windows", "1000",
        "--val-windows", "300", "--threads", "1", "--baseline-fit-windows", "2000", "--cache-mb", "64"]


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.pop("RANK", None)
    e.pop("WORLD_SIZE", None)
    return e


def run_train(args: list[str], cwd: Path, timeout: float = 240, launcher: list[str] | None = None
              ) -> subprocess.CompletedProcess:
    cmd = [*(launcher or [sys.executable]), str(SCRIPT), *args]
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=timeout, check=False)


def script_module():
    """training/train.py imported as a module, to call its `main` in this process (quick checks)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("hftbot_train_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
