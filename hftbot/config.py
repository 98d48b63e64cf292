"""Typed configuration: TOML defaults, a user file, then environment overrides.

Precedence (last wins): `hftbot/defaults.toml` (every field written out and commented) < the
user's `--config FILE` < environment variables `HFTBOT_<SECTION>__<KEY>` < command-line flags the
caller applies with `override`. Every section is a frozen dataclass below; a field's type and
bounds are checked at load, and an unknown key, a wrong type or an out-of-range value raises
`ConfigError` naming the field, the value and where it came from.

Generic rules hold for every field of every section: floats must be finite (NaN fails every
comparison, so a bound alone would let it through), integers fit in 64 bits, then the field's own
bounds, choices and patterns; `_check_cross` holds the rules between fields. Any `HFTBOT_`
environment name that is not a field, a secret or a registered switch (`ENV_SWITCHES`) is refused
with the nearest valid name: a typo must not be ignored silently.

Secrets (API keys) are never part of `Config`: they come only from the environment or a `.env`
file through `secrets()`, as `Secret` objects whose every text form is masked, so they cannot
reach a log, a recording or a checkpoint by accident.
"""

from __future__ import annotations

import dataclasses
import difflib
import hmac
import math
import os
import re
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
SYMBOL_RE = r"[A-Za-z0-9]{2,32}"  # also a folder name in recordings: no separators, no dots
HTTP_RE = r"https?://\S+"
WS_RE = r"wss?://\S+"


class ConfigError(ValueError):
    """A configuration value is wrong; the message names the field, the value and its source."""


# Environment variables with the prefix that are not config fields: secrets (read by `secrets()`)
# and switches read by one module. Any other `HFTBOT_` name is refused as a likely typo; a module
# that reads a new switch of its own registers it here.
ENV_SWITCHES = ("HFTBOT_RING_PYTHON",)  # hftbot.ipc.ring: force the Python ring paths


def _f(
    default: Any,
    *,
    choices: tuple | None = None,
    lo: float | None = None,
    hi: float | None = None,
    gt: float | None = None,
    pow2: bool = False,
    pattern: str | None = None,
    nonempty: bool = False,
) -> Any:
    """A config field: its default and the bounds `_check` enforces (lo/hi inclusive, gt exclusive;
    pattern: a full-match regex for strings, described in the error)."""
    meta = {"choices": choices, "lo": lo, "hi": hi, "gt": gt, "pow2": pow2, "pattern": pattern,
            "nonempty": nonempty}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RuntimeConfig:
    mode: str = _f("sim", choices=MODES)
    symbol: str = _f("SOLUSDT", pattern=SYMBOL_RE)
    log_level: str = _f("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    data_dir: str = _f("data", nonempty=True)
    checkpoints_dir: str = _f("checkpoints", nonempty=True)
    heartbeat_s: float = _f(0.5, lo=0.01, hi=60.0)
    heartbeat_timeout_s: float = _f(10.0, lo=0.1, hi=3600.0)
    start_timeout_s: float = _f(60.0, lo=1.0, hi=3600.0)
    restart_backoff_s: float = _f(0.5, lo=0.0, hi=3600.0)
    restart_backoff_max_s: float = _f(10.0, lo=0.0, hi=3600.0)
    max_restarts: int = _f(5, lo=0, hi=1000)
    restart_window_s: float = _f(600.0, lo=1.0, hi=7 * 86400.0)
    stop_timeout_s: float = _f(10.0, lo=0.1, hi=600.0)
    status_interval_s: float = _f(1.0, lo=0.05, hi=3600.0)
    live_confirm: bool = _f(False)
    realtime: bool = _f(True)


@dataclass(frozen=True)
class RingConfig:
    book_capacity: int = _f(65536, lo=2, hi=1 << 24, pow2=True)
    trade_capacity: int = _f(65536, lo=2, hi=1 << 24, pow2=True)
    signal_capacity: int = _f(65536, lo=2, hi=1 << 24, pow2=True)
    order_capacity: int = _f(16384, lo=2, hi=1 << 24, pow2=True)
    wait: str = _f("block", choices=WAITS)
    spin_count: int = _f(2000, lo=0, hi=10**9)


@dataclass(frozen=True)
class EndpointsConfig:
    live_rest: str = _f("https://fapi.binance.com", pattern=HTTP_RE)
    live_ws: str = _f("wss://fstream.binance.com", pattern=WS_RE)
    live_ws_api: str = _f("wss://ws-fapi.binance.com/ws-fapi/v1", pattern=WS_RE)
    testnet_rest: str = _f("https://demo-fapi.binance.com", pattern=HTTP_RE)
    testnet_ws: str = _f("wss://fstream.binancefuture.com", pattern=WS_RE)
    testnet_ws_api: str = _f("wss://testnet.binancefuture.com/ws-fapi/v1", pattern=WS_RE)


@dataclass(frozen=True)
class FeedConfig:
    levels: int = _f(10, lo=10, hi=1000)
    depth_speed: str = _f("100ms", choices=("0ms", "100ms", "250ms", "500ms"))
    book_ticker: bool = _f(True)
    trades: bool = _f(True)
    snapshot_limit: int = _f(1000, choices=(5, 10, 20, 50, 100, 500, 1000))
    snapshot_source: str = _f("rest", choices=("rest", "ws_api"))
    snapshot_budget_per_min: int = _f(200, lo=20, hi=2400)
    snapshot_min_interval_s: float = _f(1.0, lo=0.0, hi=3600.0)
    snapshot_timeout_s: float = _f(10.0, lo=0.1, hi=600.0)
    stale_s: float = _f(10.0, lo=0.1, hi=3600.0)
    ping_interval_s: float = _f(30.0, lo=1.0, hi=3600.0)
    ping_timeout_s: float = _f(20.0, lo=1.0, hi=3600.0)
    max_age_s: float = _f(82800.0, lo=10.0, hi=86400.0)
    max_age_jitter_s: float = _f(1800.0, lo=0.0, hi=86400.0)
    backoff_min_s: float = _f(0.5, lo=0.01, hi=3600.0)
    backoff_max_s: float = _f(30.0, lo=0.01, hi=3600.0)
    subscribe: str = _f("url", choices=("url", "message"))
    subscribe_per_s: float = _f(4.0, lo=0.1, hi=9.0)
    record_raw: bool = _f(True)


@dataclass(frozen=True)
class RecorderConfig:
    enabled: bool = _f(True)
    flush_s: float = _f(5.0, lo=0.05, hi=3600.0)
    rotate_s: float = _f(3600.0, lo=1.0, hi=86400.0)
    root: str = _f("")


@dataclass(frozen=True)
class ReplayConfig:
    path: str = _f("")
    speed: float = _f(1.0, lo=0.0, hi=1e6)
    loop: bool = _f(False)


@dataclass(frozen=True)
class SimConfig:
    host: str = _f("127.0.0.1", nonempty=True)
    port: int = _f(0, lo=0, hi=65535)
    seed: int = _f(1, lo=0)
    symbol: str = _f("SOLUSDT", pattern=SYMBOL_RE)
    start_price: float = _f(150.0, gt=0.0, hi=1e9)
    rate_hz: float = _f(40.0, gt=0.0, hi=1e5)
    predictability: float = _f(0.5, lo=0.0, hi=1.0)
    signal_timescale_s: float = _f(1.5, gt=0.0, hi=86400.0)
    update_id_gap: int = _f(0, lo=0, hi=10**6)
    queue_model: str = _f("risk_averse", choices=("risk_averse", "proportional", "power_prob"))
    maker_fee: float = _f(0.0, lo=0.0, hi=0.1)  # a market maker's rate (defaults.toml, docs/exec.md)
    taker_fee: float = _f(0.0005, lo=0.0, hi=0.1)
    wallet_usdt: float = _f(10000.0, lo=0.0, hi=1e12)
    leverage: int = _f(20, lo=1, hi=125)
    order_latency_ms: float = _f(0.0, lo=0.0, hi=60000.0)
    market_data_latency_ms: float = _f(0.0, lo=0.0, hi=60000.0)
    fault_drop_diff_every: int = _f(0, lo=0)
    fault_duplicate_diff_every: int = _f(0, lo=0)
    fault_disconnect_after_s: float = _f(0.0, lo=0.0, hi=86400.0)
    fault_delay_ms: float = _f(0.0, lo=0.0, hi=60000.0)
    fault_unknown_status_every: int = _f(0, lo=0)
    fault_expire_listen_key_after_s: float = _f(0.0, lo=0.0, hi=86400.0)
    fault_reject_code: int = _f(0)
    fault_reject_every: int = _f(0, lo=0)
    fault_unknown_code: int = _f(-1000)
    fault_clock_skew_ms: float = _f(0.0, lo=-3_600_000.0, hi=3_600_000.0)
    fault_rate_limit_every: int = _f(0, lo=0)
    fault_rate_limit_code: int = _f(-1015, choices=(-1015, -1003))
    fault_retry_after_ms: float = _f(1000.0, lo=0.0)
    fault_lose_order_every: int = _f(0, lo=0)
    fault_late_order_every: int = _f(0, lo=0)
    fault_late_order_ms: float = _f(0.0, lo=0.0)
    fault_close_ws_api_every: int = _f(0, lo=0)
    fault_duplicate_user_every: int = _f(0, lo=0)
    fault_reorder_user_every: int = _f(0, lo=0)


@dataclass(frozen=True)
class ModelConfig:
    window: int = _f(100, lo=1, hi=100_000)
    levels: int = _f(10, lo=1, hi=1000)
    conv_filters: int = _f(16, lo=1, hi=4096)
    inception_filters: int = _f(32, lo=1, hi=4096)
    lstm_hidden: int = _f(64, lo=1, hi=4096)
    padding: str = _f("valid", choices=("valid", "causal", "same"))
    price_ref: str = _f("prev_mid", choices=("prev_mid", "mid"))
    horizon: int = _f(50, lo=1)
    threshold_bps: float = _f(0.5, lo=0.0)
    threshold_mode: str = _f("fixed", choices=("fixed", "cost"))
    label_rule: str = _f("next_vs_prev", choices=("next_vs_prev", "next_vs_mid"))
    class_balance: str = _f("weights", choices=("weights", "sampling", "none"))
    epochs: int = _f(30, lo=1)
    patience: int = _f(5, lo=1)
    batch_size: int = _f(64, lo=1)
    lr: float = _f(0.001, lo=1e-8)
    adam_eps: float = _f(1e-8, lo=0.0)
    weight_decay: float = _f(0.0, lo=0.0)
    epoch_windows: int = _f(0, lo=0)
    val_windows: int = _f(20000, lo=0)
    val_frac: float = _f(0.15, lo=0.01, hi=0.45)
    test_frac: float = _f(0.15, lo=0.01, hi=0.45)
    train_days: float = _f(0.0, lo=0.0)
    baseline_fit_windows: int = _f(200000, lo=100)
    cache_mb: int = _f(1024, lo=16)
    threads: int = _f(0, lo=0)
    promote_min_delta: float = _f(0.0, lo=0.0)
    retrain_every: str = _f("6h")
    retire_after_days: float = _f(14.0, lo=0.0)
    search_storage: str = _f("")
    search_study: str = _f("deeplob")


@dataclass(frozen=True)
class InferenceConfig:
    enabled: bool = _f(True)
    every: int = _f(1, lo=1, hi=10**6)
    poll_interval_s: float = _f(0.5, lo=0.01, hi=3600.0)
    max_window: int = _f(2000, lo=23, hi=100_000)
    max_batch: int = _f(4096, lo=1, hi=1 << 24)
    threads: int = _f(1, lo=1, hi=256)
    verify_in_process: bool = _f(True)


STRATEGIES = ("deeplob", "imbalance", "mm", "none")


@dataclass(frozen=True)
class ExecConfig:
    # mm by default: on the simulator's default market a directional taker round trip (10.3 bps of
    # fees + spread) is paid by ~3% of the shipped model's horizons, so deeplob rarely trades (docs/exec.md)
    strategy: str = _f("mm", choices=STRATEGIES)
    style: str = _f("taker", choices=("taker", "maker"))
    maker_fee: float = _f(0.0, lo=-0.001, hi=0.01)  # = sim.maker_fee (defaults.toml, docs/exec.md)
    taker_fee: float = _f(0.0005, lo=0.0, hi=0.01)
    flatten_on_stop: bool = _f(True)
    taker_slippage_ticks: int = _f(2, lo=0)
    maker_timeout_ms: float = _f(2000.0, lo=0.0)
    exit_timeout_ms: float = _f(3000.0, lo=0.0)
    trades_flush_s: float = _f(5.0, lo=0.05)
    rehearse_ms: float = _f(1.0, lo=0.0)


@dataclass(frozen=True)
class StrategyConfig:
    deeplob_qty: float = _f(1.0, lo=0.0)
    deeplob_move_bps: float = _f(5.0, lo=0.0)
    deeplob_margin_bps: float = _f(0.5, lo=0.0)
    deeplob_horizon_updates: int = _f(100, lo=1)
    deeplob_reversal_bps: float = _f(1.0, lo=0.0)
    deeplob_stop_bps: float = _f(15.0, lo=0.0)
    imbalance_qty: float = _f(1.0, lo=0.0)
    imbalance_levels: int = _f(5, lo=1, hi=1000)
    imbalance_decay: float = _f(0.7, lo=0.0, hi=1.0)
    imbalance_threshold: float = _f(0.5, lo=0.0, hi=1.0)
    imbalance_move_bps: float = _f(5.0, lo=0.0)
    imbalance_margin_bps: float = _f(0.5, lo=0.0)
    imbalance_horizon_updates: int = _f(50, lo=1)
    imbalance_reversal_bps: float = _f(1.0, lo=0.0)
    imbalance_stop_bps: float = _f(15.0, lo=0.0)
    mm_qty: float = _f(1.0, lo=0.0)
    mm_max_inventory: float = _f(5.0, lo=0.0)
    mm_gamma: float = _f(0.01, lo=0.0)
    mm_kappa: float = _f(1.5, lo=0.0)
    mm_tau_s: float = _f(1.0, lo=0.0)
    mm_vol_halflife_updates: int = _f(200, lo=1)
    mm_margin_bps: float = _f(0.5, lo=0.0)
    mm_signal_skew_bps: float = _f(2.0, lo=0.0)
    mm_requote_ticks: int = _f(1, lo=1)
    mm_min_quote_life_ms: float = _f(250.0, lo=0.0)


@dataclass(frozen=True)
class RiskConfig:
    max_position: float = _f(10.0, lo=0.0)
    max_position_notional_usdt: float = _f(5000.0, lo=0.0)
    max_order_qty: float = _f(5.0, lo=0.0)
    max_order_notional_usdt: float = _f(2000.0, lo=0.0)
    max_open_orders: int = _f(10, lo=0)
    daily_loss_reduce_usdt: float = _f(50.0, lo=0.0)
    daily_loss_halt_usdt: float = _f(100.0, lo=0.0)
    drawdown_reduce_usdt: float = _f(75.0, lo=0.0)
    drawdown_halt_usdt: float = _f(150.0, lo=0.0)
    flatten_on_halt: bool = _f(True)
    halt_retry_ms: float = _f(1000.0, lo=1.0)
    stale_book_ms: float = _f(2000.0, lo=1.0)
    cancel_on_stale_book: bool = _f(True)
    stale_signal_ms: float = _f(1000.0, lo=1.0)
    price_band_bps: float = _f(50.0, lo=0.0)
    orders_per_10s: int = _f(300, lo=1)
    orders_per_min: int = _f(1200, lo=1)
    weight_per_min: int = _f(2400, lo=1)
    rate_limit_fraction: float = _f(0.8, lo=0.01, hi=1.0)
    rate_burst_fraction: float = _f(0.5, lo=0.01, hi=0.95)
    rate_cancel_reserve: float = _f(0.1, lo=0.0, hi=0.9)
    kill_file: str = _f("")
    rate_backoff_ms: float = _f(1000.0, lo=1.0)
    margin_backoff_ms: float = _f(5000.0, lo=0.0)


@dataclass(frozen=True)
class GatewayConfig:
    auth: str = _f("auto", choices=("auto", "ed25519", "hmac"))
    recv_window_ms: int = _f(5000, lo=1, hi=60000)
    request_timeout_s: float = _f(10.0, lo=0.1)
    connect_timeout_s: float = _f(10.0, lo=0.1)
    time_sync_s: float = _f(300.0, lo=1.0)
    listen_key_keepalive_s: float = _f(1800.0, lo=1.0, hi=3300.0)
    countdown_ms: int = _f(30000, lo=0)
    countdown_refresh_s: float = _f(10.0, lo=0.05)
    cancel_on_start: bool = _f(True)
    user_stream_path: str = _f("/private/ws/{listen_key}")
    reconnect_backoff_s: float = _f(0.5, lo=0.01)
    flatten_wait_s: float = _f(3.0, lo=0.0)
    settle_retry_ms: float = _f(500.0, lo=1.0)
    settle_attempts: int = _f(3, lo=2, hi=20)
    warm_socket: bool = _f(True)


@dataclass(frozen=True)
class BacktestConfig:
    queue_model: str = _f("power_prob", choices=("risk_averse", "proportional", "power_prob"))
    queue_power: float = _f(2.0, gt=0.0, hi=100.0)
    feed_latency: str = _f("recorded", choices=("recorded", "zero"))
    order_latency: str = _f("constant", choices=("constant", "recorded"))
    order_entry_us: float = _f(1000.0, lo=0.0, hi=60e6)
    order_response_us: float = _f(1000.0, lo=0.0, hi=60e6)
    orders_path: str = _f("")
    inference_latency_us: float = _f(-1.0, lo=-1.0, hi=60e6)
    device: str = _f("auto", choices=("auto", "cpu", "cuda"))
    signals: str = _f("auto", choices=("auto", "batched", "streaming"))
    inference_batch: int = _f(2048, lo=1, hi=1 << 20)
    period_s: float = _f(1.0, gt=0.0, hi=86400.0)
    chunk_frames: int = _f(100_000, lo=100, hi=1 << 30)
    cache: bool = _f(True)
    fast_path: str = _f("on", choices=("on", "off", "check"))
    seed: int = _f(1, lo=0)


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
    exec: ExecConfig = field(default_factory=ExecConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    backtest: BacktestConfig = field(default_factory=BacktestConfig)

    def override(self, section: str, **values: Any) -> Config:
        """A copy with some fields of one section replaced (validated; source 'command line')."""
        return self.override_sections(**{section: values})

    def override_sections(self, **sections: dict[str, Any]) -> Config:
        """`override` across sections at once, validated together (for fields a cross-field rule
        ties, such as `runtime.symbol` and `sim.symbol`)."""
        raw = to_dict(self)
        sources = dict(sources_of(self))
        for section, values in sections.items():
            for k, v in values.items():
                _set(raw, section, k, v, "command line")
                sources[(section, k)] = "command line"
        return _build(raw, sources)


SECTIONS: dict[str, type] = {
    f.name: typing.get_type_hints(Config)[f.name] for f in dataclasses.fields(Config)
}
# each section's field types, resolved once: `typing.get_type_hints` re-evaluates the annotation
# strings on every call (~5 ms for the lot), and every `override` builds a whole Config
_HINTS: dict[str, dict[str, Any]] = {name: typing.get_type_hints(cls) for name, cls in SECTIONS.items()}


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
    """Type and bounds of one value. The generic rules hold for every field of every section
    (added ones too): floats finite, integers within int64, then the field's own metadata."""
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
        if not -(1 << 63) <= value < 1 << 63:
            raise fail("must fit in 64 bits")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("must be a number")
        value = float(value)
        if not math.isfinite(value):  # nan passes every < / > test below, inf most of them
            raise fail("must be a finite number")
    elif hint is str:
        if not isinstance(value, str):
            raise fail("must be a string")
    elif origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list) or not all(
            isinstance(v, item) and not isinstance(v, bool) for v in value
        ):
            raise fail(f"must be a list of {item.__name__}")
        if item is float and not all(math.isfinite(v) for v in value):
            raise fail("must be a list of finite numbers")
        value = [float(v) for v in value] if item is float else list(value)
    elif isinstance(hint, types.UnionType):
        pass
    meta = f.metadata
    if meta.get("nonempty") and value in ("", []):
        raise fail("must not be empty")
    if meta.get("pattern") and not re.fullmatch(meta["pattern"], value):
        raise fail(f"must match {meta['pattern']}")
    if meta.get("choices") and value not in meta["choices"]:
        raise fail(f"must be one of {', '.join(map(str, meta['choices']))}")
    if meta.get("lo") is not None and value < meta["lo"]:
        raise fail(f"must be >= {meta['lo']}")
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise fail(f"must be > {meta['gt']}")
    if meta.get("hi") is not None and value > meta["hi"]:
        raise fail(f"must be <= {meta['hi']}")
    if meta.get("pow2") and (value < 1 or value & (value - 1)):
        raise fail("must be a power of two")
    return value


def _build(raw: dict, sources: dict) -> Config:
    sections = {}
    for section, cls in SECTIONS.items():
        hints = _HINTS[section]
        values = {}
        for f in dataclasses.fields(cls):
            if f.name in raw.get(section, {}):
                src = sources.get((section, f.name), "defaults")
                values[f.name] = _check(section, f, hints[f.name], raw[section][f.name], src)
        sections[section] = cls(**values)
    cfg = Config(**sections)
    _check_cross(cfg, sources)
    object.__setattr__(cfg, "_sources", dict(sources))  # not a field: equality and asdict ignore it
    return cfg


def sources_of(cfg: Config) -> dict[tuple[str, str], str]:
    """Where each value of a loaded config came from ({(section, key): source}; empty for a
    Config built by hand), so later overrides and errors still name the right source."""
    return dict(getattr(cfg, "_sources", {}))


def _check_cross(cfg: Config, sources: dict) -> None:
    """Rules that involve more than one field; the error names each field, value and source."""

    def v(section: str, key: str) -> str:
        src = sources.get((section, key), "defaults")
        return f"{section}.{key} = {getattr(getattr(cfg, section), key)!r} (from {src})"

    def need(ok: bool, rule: str, *fields: tuple[str, str]) -> None:
        if not ok:
            raise ConfigError(f"config: {rule}, got {' and '.join(v(*f) for f in fields)}")

    rt, feed = cfg.runtime, cfg.feed
    need(
        rt.mode != "live" or rt.live_confirm,
        "runtime.mode = 'live' trades real money and needs runtime.live_confirm = true (or --i-understand-live)",
        ("runtime", "mode"), ("runtime", "live_confirm"),
    )
    need(
        rt.mode != "replay" or bool(cfg.replay.path),
        "replay.path must name a recording or capture in mode 'replay'",
        ("replay", "path"),
    )
    need(
        rt.mode != "replay" or Path(cfg.replay.path).exists(),
        "replay.path must exist in mode 'replay' (a recording folder or file, or a .gz capture)",
        ("replay", "path"),
    )
    need(
        rt.mode != "sim" or cfg.sim.symbol.upper() == rt.symbol.upper(),
        "sim.symbol must equal runtime.symbol in mode 'sim' (the simulator serves one perpetual and "
        "the feed subscribes runtime.symbol)",
        ("sim", "symbol"), ("runtime", "symbol"),
    )
    # a process beats every heartbeat_s; a timeout under two periods kills healthy processes
    need(
        rt.heartbeat_timeout_s >= 2 * rt.heartbeat_s,
        "runtime.heartbeat_timeout_s must be >= 2 x runtime.heartbeat_s",
        ("runtime", "heartbeat_timeout_s"), ("runtime", "heartbeat_s"),
    )
    need(
        rt.start_timeout_s >= 2 * rt.heartbeat_s,
        "runtime.start_timeout_s must be >= 2 x runtime.heartbeat_s",
        ("runtime", "start_timeout_s"), ("runtime", "heartbeat_s"),
    )
    need(
        rt.restart_backoff_max_s >= rt.restart_backoff_s,
        "runtime.restart_backoff_max_s must be >= runtime.restart_backoff_s",
        ("runtime", "restart_backoff_max_s"), ("runtime", "restart_backoff_s"),
    )
    need(
        feed.backoff_max_s >= feed.backoff_min_s,
        "feed.backoff_max_s must be >= feed.backoff_min_s",
        ("feed", "backoff_max_s"), ("feed", "backoff_min_s"),
    )
    need(
        feed.max_age_jitter_s < feed.max_age_s,
        "feed.max_age_jitter_s must be < feed.max_age_s",
        ("feed", "max_age_jitter_s"), ("feed", "max_age_s"),
    )
    need(
        cfg.model.levels <= feed.levels,
        "model.levels must be <= feed.levels (a model reads levels the feed publishes)",
        ("model", "levels"), ("feed", "levels"),
    )
    need(
        cfg.model.window <= cfg.inference.max_window,
        "model.window must be <= inference.max_window (inference refuses longer windows)",
        ("model", "window"), ("inference", "max_window"),
    )
    g = cfg.gateway
    need(
        not g.countdown_ms or g.countdown_refresh_s * 1000 < g.countdown_ms,
        "gateway.countdown_refresh_s must be shorter than gateway.countdown_ms (the venue would cancel "
        "between two refreshes)",
        ("gateway", "countdown_refresh_s"), ("gateway", "countdown_ms"),
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


def _env_names() -> list[str]:
    """Every environment variable name the package reads."""
    names = [f"{ENV_PREFIX}{sec.upper()}__{f.name.upper()}" for sec, cls in SECTIONS.items()
             for f in dataclasses.fields(cls)]
    return names + list(SECRET_VARS.values()) + list(ENV_SWITCHES)


def _unknown_env(name: str, section: str, key: str) -> ConfigError:
    near = difflib.get_close_matches(name, _env_names(), n=1, cutoff=0.6)
    hint = f"; did you mean {near[0]}?" if near else f"; config fields are {ENV_PREFIX}<SECTION>__<KEY>"
    if section in SECTIONS and key:
        return ConfigError(f"config: unknown key {section}.{key} (from environment {name}){hint}")
    return ConfigError(f"config: unknown environment variable {name}{hint}")


def load_config(path: str | os.PathLike | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults, then the user's file, then `HFTBOT_<SECTION>__<KEY>` environment overrides.

    Any other `HFTBOT_` name (a typo such as `HFTBOT_RUNTIME_MODE`) is refused with the nearest
    valid name; secrets and `ENV_SWITCHES` are read elsewhere and pass. An empty value of a
    non-string field is an error of that variable (unset it to get the default)."""
    env = os.environ if env is None else env
    raw: dict[str, dict[str, Any]] = {}
    sources: dict[tuple[str, str], str] = {}
    _merge(raw, _read_toml(DEFAULTS_PATH, "hftbot/defaults.toml"), "defaults", sources)
    if path:
        _merge(raw, _read_toml(Path(path), str(path)), str(path), sources)
    known = set(SECRET_VARS.values()) | set(ENV_SWITCHES)
    for name, text in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        section, sep, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if not sep or section not in SECTIONS or key not in {f.name for f in dataclasses.fields(SECTIONS[section])}:
            raise _unknown_env(name, section, key)
        source = f"environment {name}"
        hint = _HINTS[section][key]
        if hint is not str and not text.strip():
            raise ConfigError(
                f"config: {section}.{key} is empty (from {source}); give a value or unset the variable"
            )
        _set(raw, section, key, _parse_env_value(text, hint), source)
        sources[(section, key)] = source
    return _build(raw, sources)


class Secret:
    """A credential that shows itself nowhere: `repr`, `str`, f-strings, `%s` and logging print
    `***`, and `json.dumps` refuses it (it is not a `str`, so no encoder or formatter sees the
    text). Code that needs the value (request signing) calls `reveal()`, one greppable name."""

    __slots__ = ("_value",)

    def __init__(self, value: str = "") -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise TypeError(f"Secret holds a str, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Secret):
            other = other._value
        if not isinstance(other, str):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('***')" if self._value else "Secret('')"

    def __str__(self) -> str:
        return "***" if self._value else ""

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __reduce__(self):  # picklable to a child process, like any setting
        return (Secret, (self._value,))


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
