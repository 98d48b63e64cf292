"""`python -m hftbot.sim generate | serve | stats` — the simulator's command line.

generate: write a recording offline (no sockets). serve: run the server alone and print its URLs
and test keys. stats: print the model's stylised facts beside a real capture's or a recording's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path

from hftbot.sim.market import ModelParams


def _params(args: argparse.Namespace) -> ModelParams:
    kw = {"seed": args.seed}
    if getattr(args, "predictability", None) is not None:
        kw["predictability"] = args.predictability
    if getattr(args, "rate", None) is not None:
        kw["rate_hz"] = args.rate
    return ModelParams(symbol=args.symbol.upper(), **kw)


def _cmd_generate(args: argparse.Namespace) -> int:
    from hftbot.feed.recording import recordings_dir
    from hftbot.sim.generate import generate_recording

    res = generate_recording(args.out, _params(args), args.hours, speed_ms=args.speed_ms)
    print(
        f"wrote {res.messages} messages ({res.depth_messages} depth diffs, {res.events} model events) "
        f"covering {res.sim_seconds:.0f} s in {res.wall_seconds:.2f} s = {res.speedup:.0f}x real time "
        f"under {recordings_dir(args.out, 'sim', args.symbol)}"
    )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from hftbot.config import SimConfig
    from hftbot.sim import auth
    from hftbot.sim.server import ServerSettings, SimServer, run_loop

    async def run() -> None:
        settings = ServerSettings(sim=SimConfig(host=args.host, port=args.port))
        server = SimServer(_params(args), settings=settings)
        server.venue.pub.want_speed(100)  # keep one diff stream warm: its chain runs from the start
        await server.start()
        u = server.urls
        print(
            f"hftbot local exchange simulator ({server.venue.symbol}) listening on {args.host}:{server.port}"
        )
        print(f"  REST base URL       {u['rest']}            (e.g. {u['rest']}/fapi/v1/depth?symbol=SOLUSDT)")
        print(f"  market streams      {u['ws']}/public/stream?streams=solusdt@depth@100ms/solusdt@bookTicker")
        print(f"                      {u['ws']}/market/stream?streams=solusdt@aggTrade")
        print(f"  user data stream    {u['ws']}/private/ws?listenKey=<POST /fapi/v1/listenKey>")
        print(f"  WS API              {u['ws_api']}")
        print("  test keys (public on purpose, accepted only by this simulator):")
        print(f"    HMAC    api key   {auth.TEST_API_KEY}")
        print(f"            secret    {auth.TEST_API_SECRET}")
        print(f"    Ed25519 api key   {auth.TEST_ED25519_API_KEY}")
        print("            private key (PKCS#8 PEM):")
        print(auth.TEST_ED25519_PRIVATE_PEM.rstrip())
        print("Ctrl-C stops.", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await server.stop()

    run_loop(run())
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from hftbot.feed.recording import iter_raw
    from hftbot.sim import stats
    from hftbot.sim.generate import generate_messages

    msgs: list[tuple[int, str, bytes]] = []
    generate_messages(
        _params(args), args.minutes * 60.0, lambda ns, s, p: msgs.append((ns, s, p)), speed_ms=0
    )
    model = stats.compute(msgs)
    path = args.path
    if path is None:  # the shared capture's facts, shipped with the package: works from any folder
        real, name = stats.reference_facts(), stats.REFERENCE_NAME
    elif not Path(path).exists():
        print(f"stats: no such file or folder: {path}", file=sys.stderr)
        return 2
    else:
        real, name = stats.compute(iter_raw(path)), Path(path).name
    print(stats.table(model, real, name))
    print(json.dumps({"model": model.__dict__, "real": real.__dict__}, default=float))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m hftbot.sim", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("generate", "serve", "stats"):
        p = sub.add_parser(name)
        p.add_argument("--seed", type=int, default=1)
        p.add_argument("--symbol", default="SOLUSDT")
        p.add_argument("--predictability", type=float, default=None, help="0..1 (model knob)")
        p.add_argument("--rate", type=float, default=None, help="mean book events per second")
        if name == "generate":
            p.add_argument("--hours", type=float, required=True)
            p.add_argument("--out", required=True)
            p.add_argument("--speed-ms", type=int, default=100, choices=(0, 100, 250, 500))
        elif name == "serve":
            p.add_argument("--host", default="127.0.0.1")
            p.add_argument("--port", type=int, default=0)
        else:
            p.add_argument(
                "path",
                nargs="?",
                default=None,
                help="a .gz capture, a recording file or folder (default: the shared BTCUSDT capture's facts)",
            )
            p.add_argument("--minutes", type=float, default=10.0, help="model minutes to simulate")
    args = ap.parse_args(argv)
    try:
        return {"generate": _cmd_generate, "serve": _cmd_serve, "stats": _cmd_stats}[args.cmd](args)
    except ValueError as e:
        print(f"hftbot.sim {args.cmd}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
