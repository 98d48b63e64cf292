"""Which venue the gateway talks to in each mode, with which keys — and what `live` demands first.

- sim: orders go to the simulator (`hftbot.sim`), signed with its public test keys;
- replay, paper: to the mirror venue (`hftbot.sim.mirror`: the simulator's server with its
  matching engine following the replayed or live book), test keys;
- testnet: Binance demo (`[endpoints] testnet_*`), `HFTBOT_API_KEY` with `HFTBOT_API_SECRET`
  (HMAC) or `HFTBOT_ED25519_PRIVATE_KEY`;
- live: Binance (`[endpoints] live_*`), the same with real keys.

The gateway is the same object in every mode: only URLs and keys change. `live` refuses to start
without keys, without the confirmation flag (`runtime.live_confirm`, checked by the config) and
without explicit risk limits (the limits a user must write in their own config file, also checked
by the config, so that a default meant for the simulator never guards real money).

`preflight` is what the supervisor runs before it spawns anything; `signer` and
`venue_urls` are what the execution process builds its gateway from. Never logs a key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping

from hftbot.config import Config, ConfigError, Secrets, secrets
from hftbot.exec.gateway import VenueUrls
from hftbot.exec.signing import ED25519, HMAC, Signer, SigningError

LOCAL_VENUE_MODES = ("sim", "replay", "paper")  # orders go to our own server, with its test keys
VENUE_MODES = ("testnet", "live")


def signer(cfg: Config, creds: Secrets | None = None) -> Signer:
    """The Signer for this mode: the simulator's test keys locally, the user's keys at Binance."""
    auth = cfg.gateway.auth
    if cfg.runtime.mode in LOCAL_VENUE_MODES:
        from hftbot.sim import auth as sim_auth

        if auth == HMAC:
            return Signer(sim_auth.TEST_API_KEY, hmac_secret=sim_auth.TEST_API_SECRET)
        return Signer(sim_auth.TEST_ED25519_API_KEY, ed25519_key=sim_auth.TEST_ED25519_PRIVATE_PEM)
    creds = secrets() if creds is None else creds
    mode = cfg.runtime.mode
    if not creds.api_key:
        raise ConfigError(f"mode {mode!r} needs HFTBOT_API_KEY (environment or .env); none is set")
    use_ed = auth == ED25519 or (auth == "auto" and bool(creds.ed25519_private_key))
    try:
        if use_ed:
            if not creds.ed25519_private_key:
                raise ConfigError(
                    f"gateway.auth = 'ed25519' in mode {mode!r} needs HFTBOT_ED25519_PRIVATE_KEY"
                )
            return Signer(_reveal(creds.api_key), ed25519_key=_reveal(creds.ed25519_private_key))
        if not creds.api_secret:
            raise ConfigError(
                f"mode {mode!r} needs HFTBOT_API_SECRET (HMAC) or HFTBOT_ED25519_PRIVATE_KEY; neither is set"
            )
        return Signer(_reveal(creds.api_key), hmac_secret=_reveal(creds.api_secret))
    except SigningError as e:
        raise ConfigError(f"mode {mode!r}: {e}") from None


def _reveal(secret) -> str:
    """A credential's text, for the signer only (`Secret.reveal()` where it masks `str`)."""
    reveal = getattr(secret, "reveal", None)
    return reveal() if reveal is not None else str(secret)


# The limits a live run must set itself: the defaults are sized for the simulator's account.
LIVE_LIMITS = (
    "max_position",
    "max_position_notional_usdt",
    "max_order_qty",
    "max_order_notional_usdt",
    "daily_loss_halt_usdt",
    "drawdown_halt_usdt",
)


def explicit_risk_keys(config_path: str | os.PathLike | None, env: Mapping[str, str]) -> set[str]:
    """`[risk]` keys the user set: in their config file or as HFTBOT_RISK__<KEY> variables."""
    keys: set[str] = set()
    if config_path:
        try:
            with open(config_path, "rb") as fh:
                keys |= set(tomllib.load(fh).get("risk", {}))
        except (OSError, tomllib.TOMLDecodeError):
            pass  # load_config has already named what is wrong with the file
    prefix = "HFTBOT_RISK__"
    keys |= {k[len(prefix) :].lower() for k in env if k.startswith(prefix)}
    return keys


def preflight(
    cfg: Config,
    config_path: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    creds: Secrets | None = None,
) -> None:
    """Refuse a run that cannot trade safely, before any process starts (ConfigError names why)."""
    mode = cfg.runtime.mode
    if mode not in VENUE_MODES or cfg.exec.strategy == "none":
        return
    if mode == "live":
        if not cfg.runtime.live_confirm:  # the config checks it too; say it here whatever the path
            raise ConfigError(
                "mode 'live' trades real money: it needs --i-understand-live (runtime.live_confirm)"
            )
        given = explicit_risk_keys(config_path, os.environ if env is None else env)
        missing = [k for k in LIVE_LIMITS if k not in given]
        if missing:
            raise ConfigError(
                "mode 'live' needs explicit risk limits (the defaults are sized for the simulator): set "
                + ", ".join(f"risk.{k}" for k in missing)
                + " in your --config file or as HFTBOT_RISK__<KEY>"
            )
    signer(cfg, creds)


def venue_urls(cfg: Config, endpoints: dict) -> VenueUrls:
    """Where orders go: the mode's endpoints (in replay/paper the mirror venue's, under "orders")."""
    ep = endpoints.get("orders", endpoints)  # replay/paper: the feed reads elsewhere than we trade
    for key in ("rest", "ws", "ws_api"):
        if not ep.get(key):
            raise ConfigError(f"mode {cfg.runtime.mode!r}: no {key!r} endpoint for the order gateway")
    return VenueUrls(cfg.runtime.symbol, ep["rest"], ep["ws_api"], ep["ws"])
