"""Modes: which keys sign, and what `live` demands before anything starts."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from hftbot import run
from hftbot.config import ConfigError, Secret, Secrets, load_config
from hftbot.exec.modes import LIVE_LIMITS, preflight, signer, venue_urls
from hftbot.exec.signing import ED25519, HMAC
from hftbot.sim import auth

LIVE = {"HFTBOT_RUNTIME__MODE": "live", "HFTBOT_RUNTIME__LIVE_CONFIRM": "true"}
LIMITS_TOML = "[risk]\n" + "".join(f"{k} = 1.0\n" for k in LIVE_LIMITS)
REAL_SECRET = "s3cr3t-not-for-logs-0123456789abcdef"


def creds(**kw) -> Secrets:
    return Secrets(**{k: Secret(v) for k, v in kw.items()})


def test_local_modes_sign_with_the_simulators_test_keys() -> None:
    cfg = load_config(env={})
    s = signer(cfg, creds(api_key="real", api_secret=REAL_SECRET))  # real keys never go to the simulator
    assert s.kind == ED25519 and s.api_key == auth.TEST_ED25519_API_KEY
    s = signer(load_config(env={"HFTBOT_GATEWAY__AUTH": "hmac"}))
    assert s.kind == HMAC and s.api_key == auth.TEST_API_KEY


def test_venue_modes_use_the_users_keys() -> None:
    cfg = load_config(env={"HFTBOT_RUNTIME__MODE": "testnet"})
    s = signer(cfg, creds(api_key="the-key", api_secret=REAL_SECRET))
    assert s.kind == HMAC and s.api_key == "the-key" and type(s.api_key) is str  # the text, not a mask
    assert s.sign("a=1") == hmac.new(REAL_SECRET.encode(), b"a=1", hashlib.sha256).hexdigest()
    pem = auth.TEST_ED25519_PRIVATE_PEM
    assert signer(cfg, creds(api_key="k", api_secret=REAL_SECRET, ed25519_private_key=pem)).kind == ED25519
    with pytest.raises(ConfigError, match="needs HFTBOT_API_KEY"):
        signer(cfg, creds())
    with pytest.raises(ConfigError, match="HFTBOT_API_SECRET .* or HFTBOT_ED25519_PRIVATE_KEY"):
        signer(cfg, creds(api_key="k"))
    with pytest.raises(ConfigError, match="not a PEM text") as e:
        signer(cfg, creds(api_key="k", ed25519_private_key=REAL_SECRET))
    assert REAL_SECRET not in str(e.value)


def test_live_needs_confirmation_explicit_limits_and_keys(tmp_path) -> None:
    with pytest.raises(ConfigError, match="live_confirm"):
        load_config(env={"HFTBOT_RUNTIME__MODE": "live"})
    cfg = load_config(env=LIVE)
    keys = creds(api_key="k", api_secret=REAL_SECRET)
    with pytest.raises(ConfigError, match="explicit risk limits") as e:
        preflight(cfg, None, env={}, creds=keys)
    assert all(f"risk.{k}" in str(e.value) for k in LIVE_LIMITS)
    user = tmp_path / "live.toml"
    user.write_text(LIMITS_TOML)
    cfg = load_config(user, env=LIVE)
    with pytest.raises(ConfigError, match="needs HFTBOT_API_KEY"):
        preflight(cfg, user, env={}, creds=creds())
    preflight(cfg, user, env={}, creds=keys)  # all three given: it may start
    # the limits may come from the environment too
    env = {f"HFTBOT_RISK__{k.upper()}": "1" for k in LIVE_LIMITS}
    preflight(load_config(env={**LIVE, **env}), None, env=env, creds=keys)
    # a run that cannot trade needs none of it
    preflight(load_config(env={**LIVE, "HFTBOT_EXEC__STRATEGY": "none"}), None, env={}, creds=creds())


def test_supervisor_refuses_live_before_starting_anything(tmp_path, monkeypatch, capsys) -> None:
    for k in ("HFTBOT_API_KEY", "HFTBOT_API_SECRET", "HFTBOT_ED25519_PRIVATE_KEY"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here
    user = tmp_path / "live.toml"
    user.write_text(LIMITS_TOML)
    assert run.main(["--mode", "live", "--config", str(user)]) == 2
    assert "live_confirm" in capsys.readouterr().err
    assert run.main(["--mode", "live", "--i-understand-live"]) == 2
    assert "explicit risk limits" in capsys.readouterr().err
    assert run.main(["--mode", "live", "--i-understand-live", "--config", str(user)]) == 2
    assert "needs HFTBOT_API_KEY" in capsys.readouterr().err


def test_orders_go_where_the_mode_says() -> None:
    cfg = load_config(env={})
    ep = {"rest": "http://a", "ws": "ws://a", "ws_api": "ws://a/ws-fapi/v1"}
    assert venue_urls(cfg, ep).ws_api == "ws://a/ws-fapi/v1"
    mirror = {**ep, "orders": {"rest": "http://m", "ws": "ws://m", "ws_api": "ws://m/ws-fapi/v1"}}
    assert venue_urls(cfg, mirror).rest == "http://m"  # replay/paper: trade on the mirror venue
    with pytest.raises(ConfigError, match="no 'ws_api' endpoint"):
        venue_urls(cfg, {"rest": "http://a", "ws": "ws://a"})
