"""Typed configuration: TOML defaults, a user file, then environment overrides.

Precedence (last wins): `hftbot/defaults.toml` (every field written out and commented) < the
user's `--config FILE` < environment variables `HFTBOT_<SECTION>__<KEY>` < command-line flags the
caller applies with `override`. Every section is a frozen dataclass below; a field's type and
bounds are checked at load, and an unknown key, a wrong type or an out-of-range value raises
`ConfigError` naming the field, the value and where it came from.

Secrets (API keys) are never part of `Config`: they come only from the environment or a `.env`
file through `secrets()`, and their repr is masked, so they cannot reach a log, a recording or a
checkpoint by accident.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")
ENV_PREFIX = "HFTBOT_"
MODES = ("sim", "replay", "paper", "testnet", "live")
WAITS = ("spin", "spin_yield", "block")


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field, the value and its source."""


def _f(
    default: Any,
    *,
    choices: tuple | None = None,
    lo: float | None = None,
    hi: float | None = None,
    pow2: bool = False,
) -> Any:
    meta = {"choices": choices, "lo": lo, "hi": hi, "pow2": pow2}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RuntimeConfig:
    mode: str = _f("sim", choices=MODES)
    symbol: str = _f("SOLUSDT")
    log_level: str = _f("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    data_dir: str = _f("data")
    checkpoints_dir: str = _f("checkpoints")
    heartbeat_s: float = _f(0.5, lo=0.01)
    heartbeat_timeout_s: float = _f(10.0, lo=0.1)
    start_timeout_s: float = _f(60.0, lo=1.0)
    restart_backoff_s: float = _f(0.5, lo=0.0)
    restart_backoff_max_s: float = _f(10.0, lo=0.0)
    max_restarts: int = _f(5, lo=0)
    restart_window_s: float = _f(600.0, lo=1.0)
    stop_timeout_s: float = _f(10.0, lo=0.1)
    status_interval_s: float = _f(1.0, lo=0.05)
    live_confirm: bool = _f(False)


@dataclass(frozen=True)
class RingConfig:
    book_capacity: int = _f(65536, lo=2, pow2=True)
    trade_capacity: int = _f(65536, lo=2, pow2=True)
    signal_capacity: int = _f(65536, lo=2, pow2=True)
    wait: str = _f("block", choices=WAITS)
    spin_count: int = _f(2000, lo=0)


@dataclass(frozen=True)
class EndpointsConfig:
    live_rest: str = _f("https://fapi.binance.com")
    live_ws: str = _f("wss://fstream.binance.com")
    live_ws_api: str = _f("wss://ws-fapi.binance.com/ws-fapi/v1")
    testnet_rest: str = _f("https://demo-fapi.binance.com")
    testnet_ws: str = _f("wss://fstream.binancefuture.com")
    testnet_ws_api: str = _f("wss://testnet.binancefuture.com/ws-fapi/v1")


@dataclass(frozen=True)
class FeedConfig:
    levels: int = _f(10, lo=10, hi=1000)
    depth_speed: str = _f("100ms", choices=("0ms", "100ms", "250ms", "500ms"))
    book_ticker: bool = _f(True)
    trades: bool = _f(True)
    snapshot_limit: int = _f(1000, choices=(5, 10, 20, 50, 100, 500, 1000))
    snapshot_source: str = _f("rest", choices=("rest", "ws_api"))
    snapshot_budget_per_min: int = _f(200, lo=20, hi=2400)
    snapshot_min_interval_s: float = _f(1.0, lo=0.0)
    snapshot_timeout_s: float = _f(10.0, lo=0.1)
    stale_s: float = _f(10.0, lo=0.1)
    ping_interval_s: float = _f(30.0, lo=1.0)
    ping_timeout_s: float = _f(20.0, lo=1.0)
    max_age_s: float = _f(82800.0, lo=10.0, hi=86400.0)
    max_age_jitter_s: float = _f(1800.0, lo=0.0)
    backoff_min_s: float = _f(0.5, lo=0.01)
    backoff_max_s: float = _f(30.0, lo=0.01)
    subscribe: str = _f("url", choices=("url", "message"))
    subscribe_per_s: float = _f(4.0, lo=0.1, hi=9.0)
    record_raw: bool = _f(True)


@dataclass(frozen=True)
class RecorderConfig:
    enabled: bool = _f(True)
    flush_s: float = _f(5.0, lo=0.05)
    rotate_s: float = _f(3600.0, lo=1.0)
    root: str = _f("")


@dataclass(frozen=True)
class ReplayConfig:
    path: str = _f("")
    speed: float = _f(1.0, lo=0.0)
    loop: bool = _f(False)


@dataclass(frozen=True)
class SimConfig:
    host: str = _f("127.0.0.1")
    port: int = _f(0, lo=0, hi=65535)
    seed: int = _f(1)
    symbol: str = _f("SOLUSDT")
    start_price: float = _f(150.0, lo=0.0)
    rate_hz: float = _f(40.0, lo=0.0)
    predictability: float = _f(0.5, lo=0.0, hi=1.0)
    signal_timescale_s: float = _f(1.5, lo=0.0)
    update_id_gap: int = _f(0, lo=0)
    queue_model: str = _f("risk_averse", choices=("risk_averse", "proportional", "power_prob"))
    maker_fee: float = _f(0.0002, lo=0.0)
    taker_fee: float = _f(0.0005, lo=0.0)
    wallet_usdt: float = _f(10000.0, lo=0.0)
    leverage: int = _f(20, lo=1, hi=125)
    order_latency_ms: float = _f(0.0, lo=0.0)
    market_data_latency_ms: float = _f(0.0, lo=0.0)
    fault_drop_diff_every: int = _f(0, lo=0)
    fault_duplicate_diff_every: int = _f(0, lo=0)
    fault_disconnect_after_s: float = _f(0.0, lo=0.0)
    fault_delay_ms: float = _f(0.0, lo=0.0)
    fault_unknown_status_every: int = _f(0, lo=0)
    fault_expire_listen_key_after_s: float = _f(0.0, lo=0.0)
    fault_reject_code: int = _f(0)
    fault_reject_every: int = _f(0, lo=0)


@dataclass(frozen=True)
class ModelConfig:
    window: int = _f(100, lo=1)
    levels: int = _f(10, lo=1, hi=1000)
    conv_filters: int = _f(16, lo=1)
    inception_filters: int = _f(32, lo=1)
    lstm_hidden: int = _f(64, lo=1)
    padding: str = _f("valid", choices=("valid", "causal", "same"))
    price_ref: str = _f("prev_mid", choices=("prev_mid", "mid"))


@dataclass(frozen=True)
class InferenceConfig:
    enabled: bool = _f(True)
    every: int = _f(1, lo=1)
    poll_interval_s: float = _f(0.5, lo=0.01)
    max_window: int = _f(2000, lo=23)
    max_batch: int = _f(4096, lo=1)
    threads: int = _f(1, lo=1)
    verify_in_process: bool = _f(True)


@dataclass(frozen=True)
class Config:
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    ring: RingConfig = field(default_factory=RingConfig)
    endpoints: EndpointsConfig = field(default_factory=EndpointsConfig)
    feed: FeedConfig = field(default_factory=FeedConfig)
    recorder: RecorderConfig = field(default_factory=RecorderConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

    def override(self, section: str, **values: Any) -> Config:
        """A copy with some fields of one section replaced (validated; source 'command line')."""
        raw = to_dict(self)
        for k, v in values.items():
            _set(raw, section, k, v, "command line")
        return _build(raw, {(section, k): "command line" for k in values})


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)
}


def to_dict(cfg: Config) -> dict[str, dict[str, Any]]:
    return dataclasses.asdict(cfg)


def _set(raw: dict, section: str, key: str, value: Any, source: str) -> None:
    if section not in SECTIONS:
        raise ConfigError(
            f"config: unknown section [{section}] (from {source}); known: {', '.join(SECTIONS)}"
        )
    names = {f.name for f in dataclasses.fields(SECTIONS[section])}
    if key not in names:
        raise ConfigError(
            f"config: unknown key {section}.{key} (from {source}); known: {', '.join(sorted(names))}"
        )
    raw.setdefault(section, {})[key] = value


def _merge(raw: dict, data: Mapping[str, Any], source: str, sources: dict) -> None:
    for section, values in data.items():
        if not isinstance(values, Mapping):
            raise ConfigError(f"config: {section} must be a [section] table, got {values!r} (from {source})")
        for key, value in values.items():
            _set(raw, section, key, value, source)
            sources[(section, key)] = source


def _check(section: str, f: dataclasses.Field, hint: Any, value: Any, source: str) -> Any:
    name = f"{section}.{f.name}"

    def fail(what: str) -> ConfigError:
        return ConfigError(f"config: {name} {what}, got {value!r} (from {source})")

    origin = typing.get_origin(hint)
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("must be true or false")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("must be an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("must be a number")
        value = float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise fail("must be a string")
    elif origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(
            isinstance(v, item) and not isinstance(v, bool) for v in value
        ):
            raise fail(f"must be a list of {item.__name__}")
        value = list(value)
    elif isinstance(hint, types.UnionType):
        pass
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        raise fail(f"must be one of {', '.join(map(str, meta['choices']))}")
    if meta.get("lo") is not None and value < meta["lo"]:
        raise fail(f"must be >= {meta['lo']}")
    if meta.get("hi") is not None and value > meta["hi"]:
        raise fail(f"must be <= {meta['hi']}")
    if meta.get("pow2") and (value < 1 or value & (value - 1)):
        raise fail("must be a power of two")
    return value


def _build(raw: dict, sources: dict) -> Config:
    sections = {}
    for section, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in raw.get(section, {}):
                src = sources.get((section, f.name), "defaults")
                values[f.name] = _check(section, f, hints[f.name], raw[section][f.name], src)
        sections[section] = cls(**values)
    cfg = Config(**sections)
    _check_cross(cfg, sources)
    return cfg


def _check_cross(cfg: Config, sources: dict) -> None:
    """Rules that involve more than one field."""
    if cfg.runtime.mode == "live" and not cfg.runtime.live_confirm:
        src = sources.get(("runtime", "mode"), "defaults")
        raise ConfigError(
            f"config: runtime.mode = 'live' trades real money and needs runtime.live_confirm = true "
            f"(or --i-understand-live) (from {src})"
        )
    if cfg.runtime.mode == "replay" and not cfg.replay.path:
        raise ConfigError("config: replay.path must name a recording or capture in mode 'replay', got ''")
    if cfg.runtime.mode == "sim" and cfg.sim.symbol.upper() != cfg.runtime.symbol.upper():
        raise ConfigError(
            f"config: sim.symbol must equal runtime.symbol in mode 'sim' (the simulator serves one "
            f"perpetual and the feed subscribes runtime.symbol), got {cfg.sim.symbol!r} and "
            f"{cfg.runtime.symbol!r} (from {sources.get(('sim', 'symbol'), 'defaults')})"
        )
    if cfg.runtime.restart_backoff_max_s < cfg.runtime.restart_backoff_s:
        raise ConfigError(
            f"config: runtime.restart_backoff_max_s must be >= runtime.restart_backoff_s, "
            f"got {cfg.runtime.restart_backoff_max_s}"
        )


def _parse_env_value(text: str, hint: Any) -> Any:
    """Environment values are strings; read them as TOML values where the field is not a string."""
    if hint is str:
        return text
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # the type check then names the field and the value


def _read_toml(path: Path, source: str) -> dict:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config: file {source} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {source} is not valid TOML: {e}") from None


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the user's file, then `HFTBOT_<SECTION>__<KEY>` environment overrides."""
    env = os.environ if env is None else env
    raw: dict[str, dict[str, Any]] = {}
    sources: dict[tuple[str, str], str] = {}
    _merge(raw, _read_toml(DEFAULTS_PATH, "hftbot/defaults.toml"), "defaults", sources)
    if path:
        _merge(raw, _read_toml(Path(path), str(path)), str(path), sources)
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name[len(ENV_PREFIX) :]:
            continue
        section, key = name[len(ENV_PREFIX) :].lower().split("__", 1)
        _set(raw, section, key, None, f"environment {name}")
        hint = typing.get_type_hints(SECTIONS[section])[key]
        raw[section][key] = _parse_env_value(text, hint)
        sources[(section, key)] = f"environment {name}"
    return _build(raw, sources)


class Secret(str):
    """A string that never shows itself in repr/str formatting of containers or logs."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


@dataclass(frozen=True)
class Secrets:
    api_key: Secret = field(default_factory=Secret)
    api_secret: Secret = field(default_factory=Secret)
    ed25519_private_key: Secret = field(default_factory=Secret)  # PEM text or a path to a PEM file

    def __repr__(self) -> str:
        return "Secrets(api_key=***, api_secret=***, ed25519_private_key=***)"


SECRET_VARS = {
    "api_key": "HFTBOT_API_KEY",
    "api_secret": "HFTBOT_API_SECRET",
    "ed25519_private_key": "HFTBOT_ED25519_PRIVATE_KEY",
}


def read_dotenv(path: str | os.PathLike) -> dict[str, str]:
    """KEY=VALUE lines of a .env file (comments and blank lines ignored, quotes stripped)."""
    out: dict[str, str] = {}
    p = Path(path)
    if not p.exists():
        return out
    for n, line in enumerate(p.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:]
        if "=" not in line:
            raise ConfigError(f"config: {p}:{n} is not KEY=VALUE")  # the line itself may hold a secret
        k, v = line.split("=", 1)
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k.strip()] = v
    return out


def secrets(env: Mapping[str, str] | None = None, dotenv: str | os.PathLike = ".env") -> Secrets:
    """API credentials from the environment, else from `.env`. Never from a config file."""
    env = os.environ if env is None else env
    file_values = read_dotenv(dotenv)
    return Secrets(**{k: Secret(env.get(var) or file_values.get(var, "")) for k, var in SECRET_VARS.items()})
