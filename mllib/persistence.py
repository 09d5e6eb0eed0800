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
    meta: dict[str, Any] = {"format": fmt, "class": cls.__qualname__, "secret_params": left_out}
    if fmt == "cloudpickle":
        meta["modules"] = pickled_modules(data)
    (folder / META_FILE).write_text(json.dumps(meta, sort_keys=True) + "\n")
    return fmt


MAX_SCANNED_BYTES = 64 << 20  # larger pickles are not read for their modules (None: unknown)


def pickled_modules(data: bytes) -> list[str] | None:
    """The top-level modules a pickle names (the classes and functions it loads by reference),
    sorted: what an environment that loads it needs. None for a pickle too large to read."""
    import pickletools

    if len(data) > MAX_SCANNED_BYTES:
        return None
    memo: dict[int, Any] = {}
    strings: list[Any] = []
    modules: set[str] = set()
    for opcode, arg, _pos in pickletools.genops(data):
        name = opcode.name
        if name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
            strings.append(arg)
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(memo.get(int(arg)))
        elif name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = strings[-1] if strings else None
        elif name == "GLOBAL":
            modules.add(str(arg).split(" ")[0].split(".")[0])
        elif name == "STACK_GLOBAL" and len(strings) >= 2 and isinstance(strings[-2], str):
            modules.add(strings[-2].split(".")[0])
        if name not in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "BINGET",
                        "LONG_BINGET", "GET", "MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):  # fmt: skip
            strings = strings[-2:]
    return sorted(modules)


def saved_modules(folder: Path) -> list[str] | None:
    """The modules a saved model's pickle names (see pickled_modules); None when unknown (a
    custom save(), a pickle too large, a model saved by an older mllib)."""
    try:
        modules = json.loads((folder / META_FILE).read_text()).get("modules")
    except (OSError, ValueError):
        return None
    return list(modules) if isinstance(modules, list) else None


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
