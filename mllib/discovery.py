"""Find the model class in a model.py and its declared params by reading the source, never running it.

The CLI must validate params and print `--help` without importing the user's code (which may import
torch or touch data); the worker later checks the same declarations on the real instance. Base
classes imported from the project's own files (`from base import BaseModel`) are read too, so a
model may inherit its methods and params from another file.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllib.errors import ModelDiscoveryError, NotFoundError
from mllib.params import ParamSpec, type_name_of

REQUIRED_METHODS = ("train", "predict")
# A LitServe API (a subclass of litserve.LitAPI) is served as it is: no training, no saved model.
LITAPI_BASE = ("litserve", "LitAPI")
CONTRACT_METHODS = ("train", "evaluate", "predict")
# The names an evaluation method may have: evaluate(), or test() as the seed's own code spells it.
EVALUATE_NAMES = ("evaluate", "test")
_MAX_IMPORT_DEPTH = 8  # re-exports followed at most this deep (and never in a cycle)


@dataclass
class ModelInfo:
    """A model class as declared in its file.

    `complete` is False when a base class lives outside the project's files (a library class), so
    mllib cannot know every method and param it brings; the run checks the real instance.
    `litapi` is True for a subclass of litserve.LitAPI (which brings no train() nor evaluate()).
    """

    file: Path
    class_name: str
    params: dict[str, ParamSpec] = field(default_factory=dict)
    methods: set[str] = field(default_factory=set)
    complete: bool = True
    litapi: bool = False

    @property
    def ref(self) -> str:
        return f"{self.file.name}:{self.class_name}"


@dataclass
class _Module:
    """One parsed source file: its classes, what it imports, and its literal constants."""

    file: Path
    classes: dict[str, _ClassDef]
    imports: dict[str, tuple[str, str | None, int]]  # local name -> (module, attribute, level)
    constants: dict[str, Any]


@dataclass
class _ClassDef:
    node: ast.ClassDef
    module: _Module
    methods: set[str]

    @property
    def name(self) -> str:
        return self.node.name


def split_ref(ref: str) -> tuple[str, str | None]:
    """`model.py:MyModel` -> ("model.py", "MyModel"); `model.py` -> ("model.py", None)."""
    if ":" in ref and not ref.endswith(":"):
        path, _, name = ref.rpartition(":")
        if path:
            return path, name
    return ref, None


def find_model(model_file: Path, class_name: str | None = None) -> ModelInfo:
    """The model class of `model_file`: the one named, or the only class defining train() and predict()."""
    if not model_file.is_file():
        raise NotFoundError(
            f"Model file {model_file} does not exist",
            hint="Give the path of your model.py, or create one with `mllib init`.",
        )
    reader = _Reader(model_file)
    classes = reader.model.classes
    if class_name is not None:
        if class_name not in classes:
            found = ", ".join(classes) or "none"
            raise ModelDiscoveryError(
                f"{model_file.name} has no class named {class_name!r} (classes found: {found})",
                hint="Fix `model` in mllib.toml or the NAME in model.py:NAME.",
            )
        return _info(reader, model_file, classes[class_name])
    lineages = {name: reader.lineage(cls) for name, cls in classes.items()}
    candidates = [
        name
        for name, (chain, _, _) in lineages.items()
        if set(REQUIRED_METHODS) <= _all_methods(chain)
    ]
    if not candidates:  # a file of one LitServe API: that API
        apis = [name for name, (_, _, litapi) in lineages.items() if litapi]
        if len(apis) == 1:
            return _info(reader, model_file, classes[apis[0]])
    # A base class that another candidate extends is not itself the model.
    leaves = [
        n
        for n in candidates
        if not any(classes[n] in lineages[o][0][1:] for o in candidates if o != n)
    ]
    if not leaves:
        partial = [name for name, (_, complete, _) in lineages.items() if not complete]
        hint = "See `mllib init` for a working example."
        if partial:
            hint = (
                f"If {partial[0]} gets train() and predict() from a library class, name it: "
                f'`model = "{model_file.name}:{partial[0]}"` in mllib.toml, or pass '
                f"{model_file.name}:{partial[0]} on the command line."
            )
        raise ModelDiscoveryError(
            f"No model class found in {model_file.name}: a model class defines train() and predict() "
            "(and evaluate() to be evaluated)",
            hint=hint,
        )
    if len(leaves) > 1:
        names = ", ".join(leaves)
        raise ModelDiscoveryError(
            f"{model_file.name} defines {len(leaves)} model classes ({names}); mllib cannot tell which to use",
            hint=f'Pick one with `model = "{model_file.name}:{leaves[0]}"` in mllib.toml, '
            f"or pass {model_file.name}:{leaves[0]} on the command line.",
        )
    return _info(reader, model_file, classes[leaves[0]])


def constructor_args(model_file: Path, class_name: str) -> dict[str, Any]:
    """The keyword arguments the file itself creates its class with, where they are all
    literals: LitServe's documented style builds the API as `MyAPI(max_batch_size=8,
    batch_timeout=0.05)` under `if __name__ == "__main__":`, and that is how mllib serves it.
    The first such call counts; {} when there is none."""
    tree = ast.parse(model_file.read_bytes(), filename=str(model_file))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and _name_of(node.func) == class_name
            and not node.args
            and all(k.arg for k in node.keywords)
        ):
            try:
                return {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
    return {}


def _info(reader: _Reader, file: Path, cls: _ClassDef) -> ModelInfo:
    chain, complete, litapi = reader.lineage(cls)
    _check_constructor(cls, chain)
    params: dict[str, ParamSpec] = {}
    for base in reversed(chain):  # base classes first, so subclasses override
        init = _init_of(base)
        if init is not None:
            params.update(_params_in(init, base.module.constants))
    methods = _all_methods(chain)
    if methods & set(EVALUATE_NAMES):
        methods.add("evaluate")  # test() evaluates too
    return ModelInfo(file, cls.name, params, methods, complete, litapi)


def _init_of(cls: _ClassDef) -> ast.FunctionDef | None:
    return next(
        (n for n in cls.node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
        None,
    )


def _check_constructor(cls: _ClassDef, chain: list[_ClassDef]) -> None:
    """mllib builds the model as `MyModel()`: an __init__ that needs arguments cannot work."""
    init = next((i for i in map(_init_of, chain) if i is not None), None)
    if init is None:
        return
    args = init.args
    positional = [*args.posonlyargs, *args.args][1:]  # without self
    required = [a.arg for a in positional[: len(positional) - len(args.defaults)]]
    required += [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if required:
        names = ", ".join(required)
        raise ModelDiscoveryError(
            f"{cls.name}.__init__ needs argument(s) {names}, but mllib creates the model with "
            f"none: {cls.name}()",
            hint=f"Declare them as params in __init__ instead, e.g. "
            f"`self.{required[0]} = mllib.Param(DEFAULT)` (a data path can come from the "
            f'environment: `mllib.Param("data/train.csv", env="TRAIN_DATA")`).',
        )


class _Reader:
    """Parses the model file and the project files its classes' bases come from, once each."""

    def __init__(self, model_file: Path) -> None:
        self.root = model_file.parent  # where the worker imports the project's modules from
        try:
            tree = ast.parse(model_file.read_bytes(), filename=str(model_file))
        except SyntaxError as exc:
            raise ModelDiscoveryError(
                f"{model_file}:{exc.lineno}: syntax error: {exc.msg}",
                hint="Fix the model file and try again.",
            ) from None
        self.model = self._module(model_file.resolve(), tree)
        self._modules: dict[Path, _Module | None] = {model_file.resolve(): self.model}

    def module(self, file: Path) -> _Module | None:
        """Another file of the project, parsed; None when it cannot be read or parsed."""
        file = file.resolve()
        if file not in self._modules:
            self._modules[file] = None  # guards against import cycles
            try:
                tree = ast.parse(file.read_bytes(), filename=str(file))
            except (OSError, SyntaxError, ValueError):
                return None
            self._modules[file] = self._module(file, tree)
        return self._modules[file]

    @staticmethod
    def _module(file: Path, tree: ast.Module) -> _Module:
        module = _Module(file, {}, _imports(tree), _module_constants(tree))
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                module.classes[node.name] = _ClassDef(node, module, _methods(node))
        return module

    def lineage(self, cls: _ClassDef) -> tuple[list[_ClassDef], bool, bool]:
        """The class and its readable bases, nearest first; False when some base is not readable
        (litserve.LitAPI is known: it brings no method a model command needs); whether one base
        is litserve.LitAPI."""
        chain: list[_ClassDef] = []
        complete, litapi = True, False
        todo = [cls]
        while todo:
            current = todo.pop(0)
            if any(current is c for c in chain):
                continue
            chain.append(current)
            for base in current.node.bases:
                if isinstance(base, ast.Name) and base.id == "object":
                    continue
                found = self._resolve(base, current.module, 0)
                if found is not None:
                    todo.append(found)
                elif _origin(base, current.module) == LITAPI_BASE:
                    litapi = True
                else:
                    complete = False
        return chain, complete, litapi

    def _resolve(self, node: ast.expr, module: _Module, depth: int) -> _ClassDef | None:
        """The class a base-class expression names, when it is defined in the project's files."""
        if depth > _MAX_IMPORT_DEPTH:
            return None
        if isinstance(node, ast.Name):
            return self._lookup(node.id, module, depth)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            imported = module.imports.get(node.value.id)
            if imported is None:
                return None
            name, attr, level = imported
            target = self._find_module(f"{name}.{attr}" if attr else name, level, module.file)
            return self._lookup(node.attr, target, depth + 1) if target else None
        return None

    def _lookup(self, name: str, module: _Module, depth: int) -> _ClassDef | None:
        if depth > _MAX_IMPORT_DEPTH:
            return None
        if name in module.classes:
            return module.classes[name]
        imported = module.imports.get(name)
        if imported is None or imported[1] is None:
            return None
        source, attr, level = imported
        target = self._find_module(source, level, module.file)
        return self._lookup(attr, target, depth + 1) if target else None

    def _find_module(self, dotted: str, level: int, importer: Path) -> _Module | None:
        """A module of the project (next to the model file), or relative to the importing file."""
        if level > len(importer.parents):
            return None
        base = importer.parents[level - 1] if level else self.root
        parts = [p for p in dotted.split(".") if p]
        folder = base.joinpath(*parts)
        candidates = [folder / "__init__.py"]
        if parts:
            candidates.insert(0, folder.with_suffix(".py"))
        found = next((c for c in candidates if c.is_file()), None)
        return self.module(found) if found else None


def _imports(tree: ast.Module) -> dict[str, tuple[str, str | None, int]]:
    """Module-level `import a.b as c` and `from .a import B as C`: local name -> its origin."""
    found: dict[str, tuple[str, str | None, int]] = {}
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    found[alias.asname] = (alias.name, None, 0)
                else:
                    top = alias.name.split(".")[0]
                    found[top] = (top, None, 0)
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name != "*":
                    found[alias.asname or alias.name] = (node.module or "", alias.name, node.level)
    return found


def _origin(node: ast.expr, module: _Module) -> tuple[str, str] | None:
    """(top-level package, name) a library base class comes from: `ls.LitAPI` after `import
    litserve as ls`, or `LitAPI` after `from litserve import LitAPI`, is ("litserve", "LitAPI")."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
        imported = module.imports.get(node.value.id)
        if imported is not None and imported[1] is None and not imported[2]:
            return imported[0].split(".")[0], node.attr
    if isinstance(node, ast.Name):
        imported = module.imports.get(node.id)
        if imported is not None and imported[1] is not None and not imported[2]:
            return imported[0].split(".")[0], imported[1]
    return None


def _all_methods(chain: list[_ClassDef]) -> set[str]:
    return set().union(*(c.methods for c in chain))


def _methods(node: ast.ClassDef) -> set[str]:
    return {n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def _name_of(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _module_constants(tree: ast.Module) -> dict[str, Any]:
    constants: dict[str, Any] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            try:
                constants[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
    return constants


def _is_param_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and _name_of(node.func) == "Param"


def _params_in(init: ast.FunctionDef, constants: dict[str, Any]) -> dict[str, ParamSpec]:
    params: dict[str, ParamSpec] = {}
    for node in ast.walk(init):
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if value is None or not _is_param_call(value):
                continue
            for target in targets:
                if (
                    isinstance(target, ast.Attribute)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "self"
                ):
                    params[target.attr] = _spec(target.attr, value, constants)
    return params


def _spec(name: str, call: ast.Call, constants: dict[str, Any]) -> ParamSpec:
    keywords = {k.arg: k.value for k in call.keywords if k.arg}
    default_node = call.args[0] if call.args else keywords.get("default")
    default, text, known = None, None, default_node is None
    if default_node is not None:
        try:
            default, known = _literal(default_node, constants), True
        except ValueError:
            text = ast.unparse(default_node)
    env = _optional_literal(keywords.get("env"))
    help_text = _optional_literal(keywords.get("help"))
    declared = _declared_secret(keywords.get("secret"))
    type_name = type_name_of(default) if known else "any"
    return ParamSpec(name, default, type_name, env, help_text, text, declared_secret=declared)


def _literal(node: ast.expr, constants: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(ast.unparse(node)) from None


def _declared_secret(node: ast.expr | None) -> bool | None:
    """`secret=` as written; one that is not a literal counts as True until the worker knows."""
    if node is None:
        return None
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return True
    return None if value is None else bool(value)


def _optional_literal(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
