"""The simulator as a supervised process: `main(ctx)` serves the venue on the port it is given.

The supervisor picks the port (`ctx.endpoints["sim_port"]`, host `cfg.sim.host`) and tells the
feed and gateway the matching URLs. This loop only starts the server, beats with its counters,
and stops it when asked. It must never block past a heartbeat period.
"""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

from hftbot.sim.market import ModelParams
from hftbot.sim.matching import QUEUE_MODELS, ConstantLatency, LatencyModel, warm_up
from hftbot.sim.server import ServerSettings, SimServer, run_loop
from hftbot.sim.venue import Faults, VenueSettings


def from_config(sim, port: int | None = None) -> tuple[ModelParams, VenueSettings, ServerSettings]:
    """Build the simulator's settings from the `[sim]` config section."""
    params = ModelParams(
        symbol=sim.symbol.upper(),
        seed=sim.seed,
        start_price=sim.start_price,
        rate_hz=sim.rate_hz,
        predictability=sim.predictability,
        signal_timescale_s=sim.signal_timescale_s,
    )
    faults = Faults(
        drop_diff_every=sim.fault_drop_diff_every,
        duplicate_diff_every=sim.fault_duplicate_diff_every,
        disconnect_after_s=sim.fault_disconnect_after_s,
        delay_ms=sim.fault_delay_ms,
        unknown_status_every=sim.fault_unknown_status_every,
        expire_listen_key_after_s=sim.fault_expire_listen_key_after_s,
        reject_code=sim.fault_reject_code,
        reject_every=sim.fault_reject_every,
    )
    venue = VenueSettings(
        leverage=sim.leverage,
        wallet_usdt=str(Decimal(repr(sim.wallet_usdt))),
        maker_fee=str(Decimal(repr(sim.maker_fee))),
        taker_fee=str(Decimal(repr(sim.taker_fee))),
        queue_model=QUEUE_MODELS[sim.queue_model](),
        faults=faults,
        update_id_gap=sim.update_id_gap,
    )
    server = ServerSettings(
        host=sim.host,
        port=sim.port if port is None else port,
        latency=LatencyModel(
            market_data=ConstantLatency(int(sim.market_data_latency_ms * 1e6)),
            order_entry=ConstantLatency(int(sim.order_latency_ms * 1e6)),
        ),
    )
    return params, venue, server


def main(ctx) -> None:
    """Run the simulator until the supervisor asks it to stop."""
    port = int(ctx.endpoints.get("sim_port") or ctx.config.sim.port)
    params, venue, server_settings = from_config(ctx.config.sim, port)
    heartbeat_s = float(getattr(ctx.config.runtime, "heartbeat_s", 1.0))
    # the matching kernels compile (cold numba cache: about a minute) or load (~1-2 s) in a thread
    # while this loop keeps beating, so the supervisor never sees a silent start
    warm = threading.Thread(target=warm_up, name="sim-warm-up", daemon=True)
    warm.start()
    while warm.is_alive():
        if ctx.stopping():
            return
        ctx.beat()
        warm.join(min(0.2, heartbeat_s / 4))

    async def run() -> None:
        server = SimServer(params, venue, server_settings)
        await server.start()
        ctx.log.info("simulator listening on %s (%s)", server.urls["rest"], params.symbol)
        try:
            while not ctx.stopping():
                v = server.venue
                ctx.beat(
                    events=v.counters["events"],
                    sent=server.sent,
                    requests=v.counters["requests"],
                    errors=v.counters["errors"],
                    orders=v.counters["orders"],
                    clients=len(server.clients),
                )
                await asyncio.sleep(min(0.2, heartbeat_s / 4))
        finally:
            await server.stop()

    run_loop(run())
