"""mllib.toml's tables: one loader, defaults and types from each table's dataclass."""

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mllib.config import CORE_TABLES, Config, load_config, read_table
from mllib.errors import ConfigError


@dataclass(frozen=True)
class Inner:
    port: int = 0


@dataclass(frozen=True)
class Table:
    timeout_s: float = 1.5
    name: str | None = None
    size: str | int = "1g"
    flag: bool = True
    inner: Inner = field(default_factory=Inner)


def _read(table: dict, **options) -> Table:
    return read_table(Table, Config(Path("mllib.toml"), {"t": table}), "t", **options)


def test_absent_keys_take_the_dataclass_defaults_and_given_ones_are_typed():
    assert _read({}) == Table()
    read = _read({"timeout_s": 3, "name": "x", "size": 512, "inner": {"port": 9}})
    assert read == Table(timeout_s=3.0, name="x", size=512, inner=Inner(9))
    assert isinstance(read.timeout_s, float)  # an integer where a number goes reads as a float


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"timeout_s": "slow"}, "`t.timeout_s` must be a number, got 'slow'"),
        ({"timeout_s": True}, "`t.timeout_s` must be a number"),
        ({"size": 1.5}, "`t.size` must be a string or an integer"),
        ({"flag": 1}, "`t.flag` must be true or false"),
        ({"inner": 3}, "`t.inner` must be a table"),
        ({"inner": {"port": "x"}}, "`t.inner.port` must be an integer"),
    ],
)
def test_a_value_of_the_wrong_type_names_its_key(table: dict, message: str):
    with pytest.raises(ConfigError, match=re.escape(message)):
        _read(table)


def test_unknown_keys_are_refused_with_the_known_ones_unless_the_table_holds_more():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[t\]: timeout") as info:
        _read({"timeout": 3})
    assert "flag, inner, name, size, timeout_s" in (info.value.hint or "")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in \[t.inner\]: prot"):
        _read({"inner": {"prot": 1}})
    assert _read({"timeout": 3}, more=True) == Table()


def test_negative_numbers_are_refused_where_asked():
    assert _read({"timeout_s": -1}).timeout_s == -1.0
    with pytest.raises(ConfigError, match=r"`t\.inner\.port` must not be negative"):
        _read({"inner": {"port": -1}}, non_negative=True)


def test_the_core_tables_are_checked_when_the_file_is_read(tmp_path: Path):
    path = tmp_path / "mllib.toml"
    path.write_text('[code]\nmax_file_mb = "big"\n')
    with pytest.raises(ConfigError, match=r"`code\.max_file_mb` must be a number"):
        load_config(path)
    path.write_text('[registry]\npath = "runs.db"\n[retry]\nmax_attempts = 5\n')
    config = load_config(path)
    assert (config.registry.path, config.retry.max_attempts) == ("runs.db", 5)
    assert config.runtime == CORE_TABLES["runtime"]()  # absent: every default
