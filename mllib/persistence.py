"""Saving a trained model as a run's model artifact, and loading it back for evaluate/predict/serve.

By default the instance is pickled with cloudpickle (classes from model.py are pickled by reference,
so the model file is imported before loading). A class that defines `save(self, dir)` and
`@classmethod load(cls, dir)` is saved and loaded with those instead.

Secret params (see mllib.params) are left out of the pickle: a loaded model gets them again as a
run does, from the environment (the param's `env=` variable, e.g. from the env file), else their
declared default. A custom save() decides for itself what it writes.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Any

from mllib.errors import MllibError

META_FILE = "mllib-model.json"
PICKLE_FILE = "model.pkl"


def has_custom_persistence(cls: type) -> bool:
    return callable(getattr(cls, "save", None)) and callable(getattr(cls, "load", None))


def save_model(obj: Any, folder: Path, secret: Collection[str] = ()) -> str:
    """Write `obj` into `folder`, without the attributes named in `secret` (its secret params);
    returns the format used ("custom" or "cloudpickle")."""
    folder.mkdir(parents=True, exist_ok=True)
    cls = type(obj)
    left_out: list[str] = []
    if has_custom_persistence(cls):
        obj.save(str(folder))
        fmt = "custom"
    else:
        import cloudpickle

        state = getattr(obj, "__dict__", {})
        held = {name: state.pop(name) for name in secret if name in state}
        left_out = sorted(held)
        try:
            data = cloudpickle.dumps(obj, protocol=5)
        except Exception as exc:
            raise MllibError(
                f"The trained {cls.__name__} could not be pickled: {type(exc).__name__}: {exc}",
                hint="Define save(self, dir) and @classmethod load(cls, dir) on the model class.",
            ) from exc
        finally:
            state.update(held)
        (folder / PICKLE_FILE).write_bytes(data)
        fmt = "cloudpickle"
    meta = {"format": fmt, "class": cls.__qualname__, "secret_params": left_out}
    (folder / META_FILE).write_text(json.dumps(meta, sort_keys=True) + "\n")
    return fmt


def load_model(cls: type, folder: Path) -> Any:
    """Load a model saved by save_model; `cls` is the model class from the (already imported) model file."""
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise MllibError(f"{folder} holds no saved model ({META_FILE} is missing)")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") == "custom":
        if not callable(getattr(cls, "load", None)):
            raise MllibError(
                f"The model was saved with {cls.__name__}.save() but the class has no load()"
            )
        return cls.load(str(folder))
    import cloudpickle

    with open(folder / PICKLE_FILE, "rb") as handle:
        obj = cloudpickle.load(handle)
    if meta.get("secret_params"):
        _resolve_secrets(cls, obj, meta["secret_params"])
    return obj


def _resolve_secrets(cls: type, obj: Any, names: list[str]) -> None:
    """Give a loaded model its secret params again: a fresh instance declares them, and they
    resolve from the environment, else their default."""
    from mllib.params import declared_params, resolve

    specs = {n: s for n, s in declared_params(cls()).items() if n in names}
    for name, value in resolve(specs, {}, config={}).values.items():
        setattr(obj, name, value)
