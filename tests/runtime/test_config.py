"""Config: defaults written out, user file and environment layering, errors that name the field."""

from __future__ import annotations

import dataclasses
import math
import tomllib
import typing

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
    assert s.api_secret == "s3cr3t-value" and s.api_secret.reveal() == "s3cr3t-value"
    text = repr(s) + str([s.api_secret]) + repr(s.api_key)
    assert "s3cr3t-value" not in text and "from-env" not in text
    assert "s3cr3t" not in repr(load_config(env={}))


def test_secret_is_masked_in_every_text_form(caplog):
    import json
    import logging
    import pickle

    sec = secrets(env={"HFTBOT_API_SECRET": "s3cr3t-value"}, dotenv="/nonexistent").api_secret
    forms = [repr(sec), str(sec), f"{sec}", f"{sec!s}", f"{sec:>20}", "%s" % sec, "%r" % (sec,),  # noqa: UP031
             "{}".format(sec), str({"k": sec}), str([sec])]  # noqa: UP032
    with caplog.at_level(logging.INFO):
        logging.getLogger("test.secret").info("key %s", sec)
    forms.append(caplog.text)
    assert all("s3cr3t" not in f for f in forms), forms
    assert "***" in str(sec) and "***" in caplog.text
    with pytest.raises(TypeError):
        json.dumps({"secret": sec})  # not a str: no encoder ever sees the text
    assert pickle.loads(pickle.dumps(sec)).reveal() == "s3cr3t-value"  # travels to a child
    assert not secrets(env={}, dotenv="/nonexistent").api_key and bool(sec)


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


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+inf"])
@pytest.mark.parametrize("name", ["HFTBOT_RUNTIME__HEARTBEAT_S", "HFTBOT_FEED__STALE_S",
                                  "HFTBOT_SIM__START_PRICE", "HFTBOT_REPLAY__SPEED"])
def test_non_finite_floats_are_refused_in_every_section(name, value):
    section, key = name[len("HFTBOT_"):].lower().split("__")
    with pytest.raises(ConfigError) as e:
        load_config(env={name: value})
    msg = str(e.value)
    assert msg == f"config: {section}.{key} must be a finite number, got {float(value)!r} (from environment {name})"


def test_every_float_field_of_every_section_refuses_nan_and_inf():
    """The generic rule: a section added later (by anyone) gets it without writing a bound."""
    cfg = load_config(env={})
    checked = 0
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if typing.get_type_hints(cls)[f.name] is not float:
                continue
            for bad in (math.nan, math.inf, -math.inf):
                with pytest.raises(ConfigError, match=rf"{section}\.{f.name} must be a finite number"):
                    cfg.override(section, **{f.name: bad})
            checked += 1
    assert checked >= 30


@pytest.mark.parametrize(
    "env, expected",
    [
        ({"HFTBOT_RUNTIME__HEARTBEAT_TIMEOUT_S": "0.4"},
         r"runtime\.heartbeat_timeout_s must be >= 2 x runtime\.heartbeat_s, got "
         r"runtime\.heartbeat_timeout_s = 0\.4 \(from environment HFTBOT_RUNTIME__HEARTBEAT_TIMEOUT_S\) and "
         r"runtime\.heartbeat_s = 0\.5 \(from defaults\)"),
        ({"HFTBOT_RUNTIME__HEARTBEAT_S": "6"}, r"heartbeat_timeout_s = 10\.0 \(from defaults\) and "
         r"runtime\.heartbeat_s = 6\.0 \(from environment HFTBOT_RUNTIME__HEARTBEAT_S\)"),
        ({"HFTBOT_FEED__BACKOFF_MAX_S": "0.1"}, r"feed\.backoff_max_s must be >= feed\.backoff_min_s"),
        ({"HFTBOT_FEED__MAX_AGE_JITTER_S": "90000"}, r"feed\.max_age_jitter_s must be <= 86400"),
        ({"HFTBOT_FEED__MAX_AGE_S": "600"}, r"feed\.max_age_jitter_s must be < feed\.max_age_s"),
        ({"HFTBOT_MODEL__LEVELS": "20"}, r"model\.levels must be <= feed\.levels"),
        ({"HFTBOT_MODEL__WINDOW": "5000"}, r"model\.window must be <= inference\.max_window"),
        ({"HFTBOT_RUNTIME__RESTART_BACKOFF_S": "20"}, r"restart_backoff_max_s must be >= runtime\.restart_backoff_s"),
        ({"HFTBOT_SIM__RATE_HZ": "0"}, r"sim\.rate_hz must be > 0\.0, got 0\.0"),
        ({"HFTBOT_SIM__SEED": "-1"}, r"sim\.seed must be >= 0, got -1"),
        ({"HFTBOT_RUNTIME__SYMBOL": "../etc", "HFTBOT_SIM__SYMBOL": "../etc"}, r"runtime\.symbol must match"),
        ({"HFTBOT_ENDPOINTS__LIVE_WS": "https://x"}, r"endpoints\.live_ws must match wss\?://"),
        ({"HFTBOT_RUNTIME__DATA_DIR": ""}, r"runtime\.data_dir must not be empty, got '' "
         r"\(from environment HFTBOT_RUNTIME__DATA_DIR\)"),
    ],
)
def test_ranges_and_cross_field_rules_name_every_field_and_source(env, expected):
    with pytest.raises(ConfigError, match=expected) as e:
        load_config(env=env)
    assert "\n" not in str(e.value)


def test_cross_field_error_blames_the_field_that_was_set():
    """A rule between two fields names both, each with its own source: the one set in the
    environment is not blamed on the defaults."""
    with pytest.raises(ConfigError) as e:
        load_config(env={"HFTBOT_RUNTIME__SYMBOL": "BTCUSDT"})
    assert "runtime.symbol = 'BTCUSDT' (from environment HFTBOT_RUNTIME__SYMBOL)" in str(e.value)
    assert "sim.symbol = 'SOLUSDT' (from defaults)" in str(e.value)


@pytest.mark.parametrize(
    "name, suggestion",
    [
        ("HFTBOT_RUNTIME_MODE", "HFTBOT_RUNTIME__MODE"),
        ("HFTBOT_RUNTME__MODE", "HFTBOT_RUNTIME__MODE"),
        ("HFTBOT_RING__WAIT_", "HFTBOT_RING__WAIT"),
        ("HFTBOT_API_SECERT", "HFTBOT_API_SECRET"),
    ],
)
def test_unknown_hftbot_environment_names_are_refused_with_the_nearest_name(name, suggestion):
    with pytest.raises(ConfigError) as e:
        load_config(env={name: "x"})
    msg = str(e.value)
    assert name in msg and msg.endswith(f"did you mean {suggestion}?") and "\n" not in msg


def test_secrets_and_registered_switches_are_not_config_typos():
    cfg = load_config(env={"HFTBOT_API_KEY": "k", "HFTBOT_API_SECRET": "s", "HFTBOT_RING_PYTHON": "1",
                           "HFTBOTX": "ignored", "OTHER": "ignored"})
    assert cfg == Config()


@pytest.mark.parametrize("name", ["HFTBOT_RUNTIME__HEARTBEAT_S", "HFTBOT_RING__BOOK_CAPACITY",
                                  "HFTBOT_RECORDER__ENABLED"])
def test_an_empty_environment_value_is_blamed_on_that_variable(name):
    section, key = name[len("HFTBOT_"):].lower().split("__")
    with pytest.raises(ConfigError) as e:
        load_config(env={name: " "})
    assert str(e.value) == (f"config: {section}.{key} is empty (from environment {name}); "
                            "give a value or unset the variable")


def test_empty_string_is_a_value_where_the_field_means_it():
    cfg = load_config(env={"HFTBOT_RECORDER__ROOT": ""})  # "" = <data_dir>/recordings
    assert cfg.recorder.root == ""
