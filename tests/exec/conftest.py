"""Fixtures: the real simulator server on loopback and gateways connected to it."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator

import pytest

from hftbot.config import GatewayConfig
from hftbot.exec.gateway import Gateway, VenueUrls
from hftbot.exec.signing import Signer
from hftbot.sim import auth
from tests.sim.conftest import ServerThread, start_server


def signer_for(kind: str) -> Signer:
    if kind == "hmac":
        return Signer(auth.TEST_API_KEY, hmac_secret=auth.TEST_API_SECRET)
    return Signer(auth.TEST_ED25519_API_KEY, ed25519_key=auth.TEST_ED25519_PRIVATE_PEM)


def venue_of(sim: ServerThread) -> VenueUrls:
    u = sim.urls
    return VenueUrls("SOLUSDT", u["rest"], u["ws_api"], u["ws"])


def gateway_config(**kw) -> GatewayConfig:
    return dataclasses.replace(GatewayConfig(), **kw)


def wait_for(gw: Gateway, pred: Callable[[list], bool], timeout_s: float = 10.0) -> list:
    """Poll the gateway until pred(all events so far) holds; returns the events."""
    events: list = []
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        events += gw.poll()
        if pred(events):
            return events
        time.sleep(0.005)
    raise AssertionError(f"condition not met in {timeout_s} s; events: {events}")


@pytest.fixture
def sim() -> Iterator[ServerThread]:
    st = start_server()
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def make_gateway(sim) -> Iterator[Callable[..., Gateway]]:
    made: list[Gateway] = []

    def make(kind: str = "ed25519", start: bool = True, **kw) -> Gateway:
        gw = Gateway(venue_of(sim), signer_for(kind), gateway_config(**kw))
        made.append(gw)
        if start:
            gw.start()
        return gw

    try:
        yield make
    finally:
        for gw in made:
            gw.close()
