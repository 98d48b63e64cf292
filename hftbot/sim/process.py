"""The simulator as a supervised process: `main(ctx)` serves the venue on the port it is given.

The supervisor picks the port (`ctx.endpoints["sim_port"]`, host `cfg.sim.host`) and tells the
feed and gateway the matching URLs. This loop only starts the server, beats with its counters,
and stops it when asked. It must never block past a heartbeat period.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading

from hftbot.config import SimConfig
from hftbot.sim.market import ModelParams
from hftbot.sim.matching import warm_up
from hftbot.sim.server import ServerSettings, SimServer, run_loop
from hftbot.sim.venue import VenueSettings


def from_config(sim: SimConfig, port: int | None = None) -> tuple[ModelParams, VenueSettings, ServerSettings]:
    """The simulator's settings from the `[sim]` config section (`port` overrides `sim.port`).

    Nothing is copied field by field: the model takes the section's fields it shares a name with
    (`ModelParams.from_config`), the venue and the server keep the section itself.
    """
    if port is not None:
        sim = dataclasses.replace(sim, port=port)
    return ModelParams.from_config(sim), VenueSettings(sim=sim), ServerSettings(sim=sim)


def load_kernels(ctx, **counters: int) -> bool:
    """Compile (a cold numba cache: a minute or two on a small core) or load (~1-2 s) the matching
    kernels in a thread while beating, so the supervisor never sees a silent start. False when
    asked to stop meanwhile."""
    heartbeat_s = float(getattr(ctx.config.runtime, "heartbeat_s", 1.0))
    warm = threading.Thread(target=warm_up, name="matching-warm-up", daemon=True)
    warm.start()
    while warm.is_alive():
        if ctx.stopping():
            return False
        ctx.beat(**counters)
        warm.join(min(0.2, heartbeat_s / 4))
    return True


def main(ctx) -> None:
    """Run the simulator until the supervisor asks it to stop."""
    port = int(ctx.endpoints.get("sim_port") or ctx.config.sim.port)
    params, venue, server_settings = from_config(ctx.config.sim, port)
    heartbeat_s = float(getattr(ctx.config.runtime, "heartbeat_s", 1.0))
    if not load_kernels(ctx):
        return

    async def run() -> None:
        server = SimServer(params, venue, server_settings)
        await server.start()
        ctx.log.info("simulator listening on %s (%s)", server.urls["rest"], params.symbol)
        ctx.serving()

        def beat() -> None:
            v = server.venue
            ctx.beat(
                events=v.counters["events"],
                sent=server.sent,
                requests=v.counters["requests"],
                errors=v.counters["errors"],
                orders=v.counters["orders"],
                clients=len(server.clients),
                position_lots=v.account.position.lots,  # the venue's own: execution must equal it
                open_orders=len(v.engine.open_orders()),
                duplicate_ids=v.orders.duplicate_ids,  # client order ids used twice: must stay 0
                countdown_cancels=v.counters["countdown_cancels"],
            )

        try:
            while not ctx.stopping():
                beat()
                await asyncio.sleep(min(0.2, heartbeat_s / 4))
        finally:
            await server.stop()
            beat()  # final counters, for the exit summary

    run_loop(run())
