"""`python -m hftbot.bench NAME [ARGS]`: run one benchmark module `hftbot.bench.NAME`.

Every benchmark prints a human table and, as its last line, one JSON object of its figures.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import sys
from pathlib import Path

import hftbot.bench


def available() -> list[str]:
    """Modules of hftbot.bench that are benchmarks: those with a `main` (not helpers like `common`).

    Read from the source, not imported: importing every benchmark would load torch and numba."""
    out = []
    for m in pkgutil.iter_modules(hftbot.bench.__path__):
        if m.name.startswith("_"):
            continue
        spec = importlib.util.find_spec(f"hftbot.bench.{m.name}")
        text = Path(spec.origin).read_text() if spec and spec.origin else ""
        if re.search(r"^def main\(", text, re.M):
            out.append(m.name)
    return sorted(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m hftbot.bench NAME [ARGS]\nbenchmarks: {', '.join(names)}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"unknown benchmark {name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    return int(importlib.import_module(f"hftbot.bench.{name}").main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
