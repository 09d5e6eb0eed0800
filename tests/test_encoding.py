"""The one JSON encoder: numpy and pandas values convert; anything else names its type."""

import datetime

import numpy as np
import pytest

from mllib.encoding import from_json, to_json_bytes
from mllib.errors import SerializationError


def test_numpy_values_convert():
    value = {
        "a": np.arange(3),
        "f": np.float16(0.5),
        "i": np.int32(7),
        "b": np.bool_(False),
        "t": (1, 2),
    }
    assert from_json(to_json_bytes(value)) == {
        "a": [0, 1, 2],
        "f": 0.5,
        "i": 7,
        "b": False,
        "t": [1, 2],
    }
    assert from_json(to_json_bytes({"d": datetime.date(2026, 1, 2)})) == {"d": "2026-01-02"}


def test_pandas_values_convert():
    pd = pytest.importorskip(
        "pandas", reason="pandas is optional; the encoder handles it when installed"
    )
    frame = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    assert from_json(to_json_bytes({"df": frame, "s": frame["x"]})) == {
        "df": [{"x": 1, "y": "a"}, {"x": 2, "y": "b"}],
        "s": [1, 2],
    }


def test_an_unknown_type_is_named():
    class Weights:
        pass

    with pytest.raises(SerializationError, match=r"test_encoding\..*Weights"):
        to_json_bytes({"w": Weights()})
