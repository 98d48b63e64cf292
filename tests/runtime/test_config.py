"""Config: defaults written out, user file and environment layering, errors that name the field."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from hftbot.config import DEFAULTS_PATH, SECTIONS, Config, ConfigError, load_config, secrets


def test_defaults_file_writes_out_every_field_with_the_dataclass_default():
    data = tomllib.loads(DEFAULTS_PATH.read_text())
    assert set(data) == set(SECTIONS)
    for section, cls in SECTIONS.items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        assert set(data[section]) == set(fields), f"[{section}] in defaults.toml differs from {cls.__name__}"
        default = getattr(Config(), section)
        for name in fields:
            assert data[section][name] == getattr(default, name), f"{section}.{name}"


def test_user_file_then_environment_override_defaults(tmp_path):
    user = tmp_path / "settings.toml"
    user.write_text(
        '[ring]\nwait = "spin"\nbook_capacity = 1024\n[runtime]\nsymbol = "BTCUSDT"\n[sim]\nsymbol = "BTCUSDT"\n'
    )
    cfg = load_config(user, env={"HFTBOT_RING__BOOK_CAPACITY": "2048", "HFTBOT_RUNTIME__HEARTBEAT_S": "2"})
    assert cfg.ring.wait == "spin"
    assert cfg.ring.book_capacity == 2048  # environment beats the file
    assert cfg.runtime.symbol == "BTCUSDT"
    assert cfg.runtime.heartbeat_s == 2.0 and isinstance(cfg.runtime.heartbeat_s, float)
    assert cfg.ring.trade_capacity == Config().ring.trade_capacity


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[ring]\nwaitt = 'spin'\n", r"unknown key ring\.waitt \(from .*settings\.toml\)"),
        ("[rng]\nwait = 'spin'\n", r"unknown section \[rng\]"),
        ("[ring]\nbook_capacity = 'big'\n", r"ring\.book_capacity must be an integer, got 'big'"),
        ("[ring]\nbook_capacity = 1000\n", r"ring\.book_capacity must be a power of two, got 1000"),
        (
            "[runtime]\nmax_restarts = -1\n",
            r"runtime\.max_restarts must be >= 0, got -1 \(from .*settings\.toml\)",
        ),
        ("[runtime]\nlive_confirm = 1\n", r"runtime\.live_confirm must be true or false, got 1"),
        ("[runtime]\nmode = 'moon'\n", r"runtime\.mode must be one of sim, replay"),
        ("[ring\n", r"is not valid TOML"),
    ],
)
def test_wrong_config_fails_at_start_naming_the_field(tmp_path, text, expected):
    user = tmp_path / "settings.toml"
    user.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_config(user, env={})


def test_environment_errors_name_the_variable():
    with pytest.raises(
        ConfigError, match=r"ring\.wait must be one of .* \(from environment HFTBOT_RING__WAIT\)"
    ):
        load_config(env={"HFTBOT_RING__WAIT": "nap"})
    with pytest.raises(ConfigError, match=r"unknown key ring\.nope \(from environment HFTBOT_RING__NOPE\)"):
        load_config(env={"HFTBOT_RING__NOPE": "1"})


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", env={})


def test_live_mode_needs_explicit_confirmation():
    with pytest.raises(ConfigError, match="live_confirm"):
        load_config(env={"HFTBOT_RUNTIME__MODE": "live"})
    cfg = load_config(env={"HFTBOT_RUNTIME__MODE": "live", "HFTBOT_RUNTIME__LIVE_CONFIRM": "true"})
    assert cfg.runtime.mode == "live"


def test_replay_mode_needs_a_path():
    with pytest.raises(ConfigError, match="replay.path"):
        load_config(env={"HFTBOT_RUNTIME__MODE": "replay"})


def test_override_validates_like_a_file():
    cfg = load_config(env={})
    assert cfg.override("sim", port=1234).sim.port == 1234
    with pytest.raises(ConfigError, match=r"sim\.port must be <= 65535, got 70000 \(from command line\)"):
        cfg.override("sim", port=70000)


def test_secrets_come_from_env_or_dotenv_and_never_print(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("# keys\nHFTBOT_API_KEY=from-file\nexport HFTBOT_API_SECRET='s3cr3t-value'\n")
    s = secrets(env={"HFTBOT_API_KEY": "from-env"}, dotenv=dotenv)
    assert s.api_key == "from-env"  # the environment wins
    assert s.api_secret == "s3cr3t-value"
    text = repr(s) + str([s.api_secret]) + repr(s.api_key)
    assert "s3cr3t-value" not in text and "from-env" not in text
    assert "s3cr3t" not in repr(load_config(env={}))


def test_config_has_no_place_for_secrets(tmp_path):
    user = tmp_path / "settings.toml"
    user.write_text('[runtime]\napi_secret = "x"\n')
    with pytest.raises(ConfigError, match="unknown key runtime.api_secret"):
        load_config(user, env={})


def test_sim_mode_refuses_a_symbol_the_simulator_does_not_serve():
    with pytest.raises(ConfigError, match=r"sim\.symbol must equal runtime\.symbol"):
        load_config(env={"HFTBOT_RUNTIME__SYMBOL": "BTCUSDT"})
    cfg = load_config(env={"HFTBOT_RUNTIME__SYMBOL": "BTCUSDT", "HFTBOT_SIM__SYMBOL": "BTCUSDT"})
    assert cfg.sim.symbol == cfg.runtime.symbol == "BTCUSDT"
