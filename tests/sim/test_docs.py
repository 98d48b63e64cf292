"""docs/sim.md shows the test keys the simulator really accepts."""

from __future__ import annotations

from pathlib import Path

from hftbot.sim import auth

DOC = Path(__file__).resolve().parents[2] / "docs" / "sim.md"


def test_documented_test_keys_are_the_accepted_ones() -> None:
    text = DOC.read_text()
    for value in (auth.TEST_API_KEY, auth.TEST_API_SECRET, auth.TEST_ED25519_API_KEY):
        assert f"`{value}`" in text
    assert auth.TEST_ED25519_PRIVATE_PEM.strip() in text
    ring = auth.KeyRing()
    assert ring.verify(auth.TEST_API_KEY, ["a=1"], auth.sign_hmac(auth.TEST_API_SECRET, "a=1"))
    assert ring.verify(
        auth.TEST_ED25519_API_KEY, ["a=1"], auth.sign_ed25519(auth.TEST_ED25519_PRIVATE_PEM, "a=1")
    )
    assert not ring.verify(auth.TEST_API_KEY, ["a=2"], auth.sign_hmac(auth.TEST_API_SECRET, "a=1"))
