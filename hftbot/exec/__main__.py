"""`python -m hftbot.exec kill | unkill`: the kill switch from the command line.

`kill` creates the kill file (`risk.kill_file`, default `<runtime.data_dir>/KILL`) that a running
execution process checks every 50 ms: it goes HALTED for the rest of its run (cancel all, flatten
if `risk.flatten_on_halt`), and a new run starts HALTED while the file exists. `unkill` removes it.
`--config` selects the same settings file as the run.
"""

from __future__ import annotations

import argparse
import sys
import time

from hftbot.config import ConfigError, load_config
from hftbot.exec.process import kill_file


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m hftbot.exec", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("kill", "unkill"))
    p.add_argument("--config", help="the TOML file the run uses")
    p.add_argument("--reason", default="command line", help="written into the kill file")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2
    path = kill_file(cfg)
    if args.command == "kill":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {args.reason}\n")
        print(f"kill switch set: {path} (execution halts within 50 ms; remove it with `unkill`)")
    else:
        existed = path.exists()
        path.unlink(missing_ok=True)
        print(f"kill switch {'removed' if existed else 'was not set'}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
