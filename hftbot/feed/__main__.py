"""`python -m hftbot.feed COMMAND`: feed tools (check). Dispatch only; no logic here."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m hftbot.feed check PATH... [--levels N] [--tick T --lot L]")
        return 0 if argv else 2
    cmd, rest = argv[0], argv[1:]
    if cmd == "check":
        from hftbot.feed.check import main as check_main

        return check_main(rest)
    print(f"hftbot.feed: unknown command {cmd!r} (known: check)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
