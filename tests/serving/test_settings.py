"""mllib.toml's serving sections: every number configurable, documented, and checked."""

import dataclasses
import tomllib
from pathlib import Path

import pytest

from mllib.config import Config
from mllib.errors import ConfigError
from mllib.serving.control.judge import Rollout
from mllib.serving.control.settings import (
    DeploySettings,
    KeySettings,
    LoadtestSettings,
    ServeSettings,
    Settings,
)

ROOT = Path(__file__).resolve().parents[2]


def test_the_example_file_documents_every_setting_with_its_default():
    example = tomllib.loads((ROOT / "mllib.toml.example").read_text())
    for section, cls in [
        ("serve", ServeSettings),
        ("deploy", DeploySettings),
        ("keys", KeySettings),
        ("loadtest", LoadtestSettings),
        ("rollout", Rollout),
    ]:
        names = {f.name for f in dataclasses.fields(cls)}
        assert set(example[section]) == names, section
        defaults = cls()
        for name, value in example[section].items():
            if name not in ("staging", "prod", "input"):
                assert getattr(defaults, name) == value, f"[{section}] {name}"
    settings = Settings.from_config(Config(Path("mllib.toml"), example))
    assert settings.deploy.env("staging").require_keys is False
    assert settings.deploy.env("prod").require_keys is True


def test_overrides_are_read_and_typos_or_bad_values_are_errors():
    config = Config(
        Path("mllib.toml"),
        {"deploy": {"cooldown_base_s": 60, "prod": {"port": 9100, "workers": 2}}},
    )
    settings = Settings.from_config(config)
    assert settings.deploy.cooldown_base_s == 60
    prod = settings.deploy.env("prod")
    # inline (the default), each worker is an HTTP process; api_servers is for worker mode
    assert (prod.port, prod.inference, prod.workers, prod.api_servers) == (9100, "inline", 2, 2)
    assert (prod.max_batch, settings.serve.max_batch) == (32, 32)
    batching = Config(Path("mllib.toml"), {"deploy": {"max_batch": 8, "prod": {"max_batch": 4}}})
    deploy = Settings.from_config(batching).deploy
    assert (deploy.env("staging").max_batch, deploy.env("prod").max_batch) == (8, 4)
    with pytest.raises(ConfigError, match=r"\[serve\] max_batch must be ≥ 1"):
        Settings.from_config(Config(Path("mllib.toml"), {"serve": {"max_batch": 0}}))
    with pytest.raises(
        ConfigError, match=r"\[deploy.prod\] workers, api_servers, max_batch and min_replicas"
    ):
        Settings.from_config(
            Config(Path("mllib.toml"), {"deploy": {"prod": {"max_batch": 0}}})
        ).deploy.env("prod")
    worker_mode = Config(
        Path("mllib.toml"),
        {"deploy": {"prod": {"inference": "worker", "workers": 2, "api_servers": 3}}},
    )
    prod = Settings.from_config(worker_mode).deploy.env("prod")
    assert (prod.inference, prod.workers, prod.api_servers) == ("worker", 2, 3)
    with pytest.raises(ConfigError, match=r'\[serve\] inference must be "inline" or "worker"'):
        Settings.from_config(Config(Path("mllib.toml"), {"serve": {"inference": "gpu"}}))
    with pytest.raises(ConfigError, match=r"\[deploy.staging\] inference must be"):
        Settings.from_config(
            Config(Path("mllib.toml"), {"deploy": {"staging": {"inference": "inlined"}}})
        ).deploy.env("staging")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[deploy\]: cooldown_s"):
        Settings.from_config(Config(Path("mllib.toml"), {"deploy": {"cooldown_s": 1}}))
    with pytest.raises(ConfigError, match="must be a number"):
        Settings.from_config(Config(Path("mllib.toml"), {"keys": {"default_rps": "fast"}}))
    with pytest.raises(ConfigError, match="must not be negative"):
        Settings.from_config(Config(Path("mllib.toml"), {"loadtest": {"max_rps": -1}}))
    with pytest.raises(ConfigError, match="require_keys cannot be turned off"):
        Settings.from_config(
            Config(Path("mllib.toml"), {"deploy": {"prod": {"require_keys": False}}})
        ).deploy.env("prod")


def test_placement_on_agents_needs_their_names():
    where = Config(Path("mllib.toml"), {"serve": {"placement": "agents", "agents": ["gpu1"]}})
    assert Settings.from_config(where).serve.agents == ["gpu1"]
    with pytest.raises(ConfigError, match=r'\[serve\] placement must be "local" or "agents"'):
        Settings.from_config(Config(Path("mllib.toml"), {"serve": {"placement": "cloud"}}))
    with pytest.raises(ConfigError, match=r'placement = "agents" needs agents = \["NAME"'):
        Settings.from_config(Config(Path("mllib.toml"), {"serve": {"placement": "agents"}}))
    with pytest.raises(ConfigError, match=r"`serve.agents` must be a list"):
        Settings.from_config(Config(Path("mllib.toml"), {"serve": {"agents": "gpu1"}}))
    with pytest.raises(ConfigError, match=r"\[serve\] agents must be a list of agent names"):
        Settings.from_config(Config(Path("mllib.toml"), {"serve": {"agents": [1]}}))
