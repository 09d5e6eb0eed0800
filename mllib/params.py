"""Model params: `mllib.Param(default)` declarations, parsing `--name=value`, conversion and precedence.

Precedence, highest first: command line > the env variable named by `env=` (the real environment,
then the env file) > `[params]` in mllib.toml > the declared default.

Secret params (`secret=True`, or a name or `env=` variable that looks like a credential, see
`looks_secret`) reach the model as they are, but everything mllib records or prints about them
(the registry, run events, `--help`, messages) holds `SECRET_MARKER` instead of the value.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mllib.errors import ParamError

_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}
TYPE_NAMES = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}
SECRET_MARKER = "***"  # what the registry, events and messages hold instead of a secret's value
SECRET_TYPE = "secret"  # the registry's `type` of a secret param's row

# Words of a param name or `env=` variable that make it a secret by default (case-insensitive,
# whole words between `_`, `-` or `.`): HF_TOKEN, db_password, OPENAI_API_KEY, aws_secret...
_SECRET_WORDS = {"token", "secret", "password", "passwd", "passphrase", "credential"}
_SECRET_WORDS |= {"credentials", "apikey"}
_SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("auth", "key")}
# Tokenizer settings are not credentials: pad_token, eos_token, bos_token...
_TOKENIZER_WORDS = {"pad", "eos", "bos", "unk", "sep", "cls", "mask", "start", "end", "special"}


class Param:
    """A tunable value declared in a model's `__init__`: `self.learning_rate = mllib.Param(0.1)`.

    Inside a run mllib replaces it with the resolved value; in a notebook use `mllib.create(MyModel)`.
    """

    __slots__ = ("default", "env", "help", "secret")

    def __init__(
        self,
        default: Any,
        *,
        env: str | None = None,
        help: str | None = None,
        secret: bool | None = None,
    ) -> None:
        self.default = default
        self.env = env
        self.help = help
        self.secret = secret  # None: decided by the name (see looks_secret)

    def __repr__(self) -> str:
        env = f", env={self.env!r}" if self.env else ""
        default = SECRET_MARKER if is_secret(self.secret, "", self.env) else repr(self.default)
        return f"Param({default}{env})"

    def _unresolved(self, *args: Any) -> Any:
        raise UnresolvedParamError(
            f"{self!r} was used as a value before mllib resolved it: in a run, params get their "
            "values when __init__ returns, so read them in train(), evaluate() or predict(), not "
            "in __init__; elsewhere (a notebook, a load() classmethod) build the model with "
            "mllib.create(MyModel) instead of MyModel()."
        )


class UnresolvedParamError(TypeError):
    """A Param was used as its value (a path, a number, a flag) before mllib replaced it."""


# Using a Param as a value in __init__ (open(self.path), range(self.epochs), if self.flag:,
# self.lr * 2) fails with a message that says why, rather than a puzzling TypeError or, for a
# truth test, silently taking the Param object as true.
_VALUE_METHODS = (
    "__fspath__ __bool__ __int__ __float__ __index__ __iter__ __len__ __getitem__ __contains__ "
    "__add__ __radd__ __sub__ __rsub__ __mul__ __rmul__ __truediv__ __rtruediv__ __floordiv__ "
    "__rfloordiv__ __mod__ __rmod__ __pow__ __rpow__ __neg__ __lt__ __le__ __gt__ __ge__"
)
for _name in _VALUE_METHODS.split():
    setattr(Param, _name, Param._unresolved)
del _name


def looks_secret(name: str | None) -> bool:
    """Whether a param or variable name reads as a credential: a word TOKEN, SECRET, PASSWORD,
    PASSWD, PASSPHRASE, CREDENTIAL(S) or APIKEY, or API_KEY, ACCESS_KEY, PRIVATE_KEY, AUTH_KEY
    (case-insensitive; `pad_token`-style tokenizer settings are not)."""
    if not name:
        return False
    words = [w for w in re.split(r"[_\-.\s]+", name.lower()) if w]
    for i, word in enumerate(words):
        before = words[i - 1] if i else ""
        if word in _SECRET_WORDS and not (word == "token" and before in _TOKENIZER_WORDS):
            return True
        if (before, word) in _SECRET_PAIRS:
            return True
    return False


def is_secret(declared: bool | None, name: str, env: str | None) -> bool:
    """`secret=` as declared, else whether the param's name or env variable looks secret."""
    if declared is not None:
        return bool(declared)
    return looks_secret(name) or looks_secret(env)


@dataclass(frozen=True)
class ParamSpec:
    """What is known of one declared param (from the class itself or read from its source)."""

    name: str
    default: Any
    type_name: str  # bool, int, float, str, list, dict, or "any" when the default is None/unknown
    env: str | None = None
    help: str | None = None
    default_text: str | None = None  # source text of a default that could not be evaluated
    declared_secret: bool | None = None  # `secret=` as written; None: decided by the names

    @classmethod
    def from_param(cls, name: str, param: Param) -> ParamSpec:
        return cls(
            name,
            param.default,
            type_name_of(param.default),
            param.env,
            param.help,
            declared_secret=param.secret,
        )

    @property
    def secret(self) -> bool:
        return is_secret(self.declared_secret, self.name, self.env)

    @property
    def shown_default(self) -> str:
        if self.secret:
            return SECRET_MARKER
        return self.default_text if self.default_text is not None else json.dumps(self.default)


@dataclass(frozen=True)
class ResolvedParams:
    """Final param values, where each came from (cli, env, config, default) and which are secret."""

    values: dict[str, Any]
    sources: dict[str, str]
    secret: frozenset[str] = frozenset()

    @property
    def recorded(self) -> dict[str, Any]:
        """The values as mllib records and shows them: SECRET_MARKER for each secret."""
        return {k: SECRET_MARKER if k in self.secret else v for k, v in self.values.items()}

    def shown(self) -> str:
        """`name=value, ...` for messages, secrets masked."""
        return ", ".join(f"{k}={v!r}" for k, v in self.recorded.items()) or "no params"


def type_name_of(value: Any) -> str:
    return TYPE_NAMES.get(type(value), "any")


def convert(name: str, raw: Any, type_name: str, *, where: str = "", secret: bool = False) -> Any:
    """Convert `raw` (a string from the command line or environment, or a typed value) to `type_name`.

    `where` says where the value came from in the error ("in [params] of mllib.toml"); a
    secret's value is not repeated there.
    """
    try:
        value = _convert(raw, type_name)
    except (ValueError, TypeError):
        got = "a value" if secret else repr(raw)
        where = f" {where}" if where else ""
        raise ParamError(
            f"Param `{name}` got {got}{where}, which is not a valid {type_name}",
            hint=_type_hint(type_name),
        ) from None
    bad = _out_of_range(value)
    if bad is not None:
        number, allowed = bad
        got = "a value" if secret else _shown_number(number)
        where = f" {where}" if where else ""
        raise ParamError(
            f"Param `{name}` got {got}{where}: allowed is {allowed}",
            hint="Every number mllib records must be finite and fit in 64 bits.",
        )
    return value


def _out_of_range(value: Any) -> tuple[Any, Any] | None:
    """The first number in `value` (nested in lists and dicts too) that a run cannot record
    (NaN, an infinity, an integer past 64 bits), with the range it is outside; else None."""
    from mllib.ranges import FLOAT_PARAM, INT_PARAM

    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if INT_PARAM.contains(value) else (value, INT_PARAM)
    if isinstance(value, float):
        return None if FLOAT_PARAM.contains(value) else (value, FLOAT_PARAM)
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for item in items:
        bad = _out_of_range(item)
        if bad is not None:
            return bad
    return None


def _shown_number(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:6]}…({len(text)} digits)"


def _convert(raw: Any, type_name: str) -> Any:
    if type_name == "any":
        return raw
    if not isinstance(raw, str):
        return _convert_typed(raw, type_name)
    text = raw.strip()
    if type_name == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(raw)
    if type_name == "int":
        return int(text)
    if type_name == "float":
        return float(text)
    if type_name == "str":
        return raw
    value = json.loads(text)  # list / dict
    return _convert_typed(value, type_name)


def _convert_typed(value: Any, type_name: str) -> Any:
    if type_name == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    expected = {v: k for k, v in TYPE_NAMES.items()}[type_name]
    if type(value) is not expected:
        raise TypeError(value)
    return value


def _type_hint(type_name: str) -> str:
    return {
        "bool": "Use true/false, 1/0 or yes/no.",
        "int": "Use a whole number such as 10.",
        "float": "Use a number such as 0.001 or 1e-3.",
        "list": "Use a JSON list such as [1, 2] (quote it in the shell: '[1, 2]').",
        "dict": 'Use a JSON object such as {"a": 1} (quote it in the shell).',
    }.get(type_name, "")


def param_table(specs: Mapping[str, ParamSpec]) -> str:
    """A plain listing of declared params, used in errors and `--help`."""
    if not specs:
        return "  (this model declares no params)"
    width = max(len(n) for n in specs) + 2
    lines = []
    for spec in specs.values():
        env = f"  env {spec.env}" if spec.env else ""
        secret = "  (secret: not recorded)" if spec.secret else ""
        lines.append(
            f"  --{spec.name:<{width}} {spec.type_name:<5}  default {spec.shown_default}{env}{secret}"
        )
    return "\n".join(lines)


def resolve(
    specs: Mapping[str, ParamSpec],
    cli: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, Any] | None = None,
    env_file: str | None = None,
) -> ResolvedParams:
    """Apply precedence (cli > env > config > default) and convert every value to its declared type.

    `env_file`: the env file the environment's values may come from, named in errors.
    """
    environ = os.environ if environ is None else environ
    config = config or {}
    check_known(specs, cli)
    check_known(specs, config, where="in [params] of mllib.toml")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, spec in specs.items():
        if name in cli:
            raw, source, where = cli[name], "cli", "on the command line"
        elif spec.env and spec.env in environ:
            raw, source = environ[spec.env], "env"
            where = f"from the environment variable {spec.env}"
            if env_file and os.environ.get(spec.env) != raw:
                where = f"from {spec.env} in {env_file}"
        elif name in config:
            raw, source, where = config[name], "config", "in [params] of mllib.toml"
        else:
            values[name], sources[name] = spec.default, "default"
            continue
        values[name] = convert(name, raw, spec.type_name, where=where, secret=spec.secret)
        sources[name] = source
    secret = frozenset(name for name, spec in specs.items() if spec.secret)
    return ResolvedParams(values, sources, secret)


def check_known(
    specs: Mapping[str, ParamSpec],
    given: Iterable[str],
    where: str = "on the command line",
    *,
    options: Iterable[str] = (),
) -> None:
    """Refuse names that are not params, suggesting the closest param (or, on the command line,
    the closest of the command's own `options`)."""
    unknown = [name for name in given if name not in specs]
    if unknown:
        dashes = where == "on the command line"
        names = ", ".join(f"`{n}`{_did_you_mean(n, specs, options, dashes)}" for n in unknown)
        raise ParamError(
            f"Unknown param {names} {where}. The model declares:\n{param_table(specs)}",
            hint="Check the spelling, or declare it in __init__ with mllib.Param(default).",
        )


def _did_you_mean(name: str, specs: Iterable[str], options: Iterable[str], dashes: bool) -> str:
    """` (did you mean --learning_rate?)` for the param or option closest to `name`, else ''."""
    from difflib import get_close_matches

    prefix = "--" if dashes else ""
    spellings = {f"{prefix}{p}": p for p in specs} | {o: _norm(o.lstrip("-")) for o in options}
    close = get_close_matches(_norm(name), list(spellings.values()), n=1)
    if not close:
        return ""
    return f" (did you mean {next(s for s, n in spellings.items() if n == close[0])}?)"


def parse_cli_params(
    args: list[str],
    specs: Mapping[str, ParamSpec] | None = None,
    *,
    options: Iterable[str] | None = None,
) -> dict[str, str]:
    """Parse `--name=value`, `--name value`, `--flag`/`--no-flag` (bools) and `-p name=value` into
    raw strings. Given `specs` and the command's own `options` (the CLI), a name that is not a
    param is refused at once, naming the closest param or option (`--detach`)."""
    raw: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-p", "--param"):
            if i + 1 >= len(args) or "=" not in args[i + 1]:
                raise ParamError(f"{arg} needs NAME=VALUE, e.g. {arg} learning_rate=0.01")
            name, value = args[i + 1].split("=", 1)
            raw[_norm(name)] = value
            i += 2
            continue
        if not arg.startswith("--") or arg == "--":
            raise ParamError(
                f"Unexpected argument {arg!r}",
                hint="Params are given as --name=value, e.g. --learning_rate=0.01.",
            )
        body = arg[2:]
        name = _norm(body.split("=", 1)[0])
        if specs is not None and options is not None and not _negates_a_bool(name, specs):
            check_known(specs, [name], options=options)
        if "=" in body:
            raw[name] = body.split("=", 1)[1]
            i += 1
            continue
        spec_type = specs[name].type_name if specs and name in specs else None
        if specs is not None and _negates_a_bool(name, specs):
            raw[name[3:]] = "false"
            i += 1
        elif spec_type == "bool" and (i + 1 >= len(args) or args[i + 1].startswith("-")):
            raw[name] = "true"
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw[name] = args[i + 1]
            i += 2
        else:
            raise ParamError(f"Param --{name} has no value", hint=f"Write --{name}=VALUE.")
    return raw


def _norm(name: str) -> str:
    return name.strip().replace("-", "_")


def _negates_a_bool(name: str, specs: Mapping[str, ParamSpec]) -> bool:
    return name.startswith("no_") and name[3:] in specs and specs[name[3:]].type_name == "bool"


def declared_params(obj: object) -> dict[str, ParamSpec]:
    """The Param attributes of a freshly constructed model instance, in declaration order."""
    return {
        name: ParamSpec.from_param(name, value)
        for name, value in vars(obj).items()
        if isinstance(value, Param)
    }


def apply(obj: object, resolved: ResolvedParams) -> None:
    """Replace each Param attribute of `obj` with its resolved value."""
    for name, value in resolved.values.items():
        setattr(obj, name, value)


def create(cls: type, /, **overrides: Any) -> Any:
    """Construct a model with its params resolved, outside a run (notebooks, plain scripts, tests).

    >>> model = mllib.create(MyModel, learning_rate=0.01)  # doctest: +SKIP
    """
    obj = cls()
    resolved = resolve(declared_params(obj), overrides)
    apply(obj, resolved)
    return obj
