"""Find the model class in a model.py and its declared params by reading the source, never running it.

The CLI must validate params and print `--help` without importing the user's code (which may import
torch or touch data); the worker later checks the same declarations on the real instance.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mllib.errors import ModelDiscoveryError, NotFoundError
from mllib.params import ParamSpec, type_name_of

REQUIRED_METHODS = ("train", "predict")
CONTRACT_METHODS = ("train", "evaluate", "predict")


@dataclass
class ModelInfo:
    """A model class as declared in its file."""

    file: Path
    class_name: str
    params: dict[str, ParamSpec] = field(default_factory=dict)
    methods: set[str] = field(default_factory=set)

    @property
    def ref(self) -> str:
        return f"{self.file.name}:{self.class_name}"


@dataclass
class _ClassDef:
    node: ast.ClassDef
    bases: list[str]
    methods: set[str]


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
    source = model_file.read_text(encoding="utf-8")
    try:
        tree = ast.parse(source, filename=str(model_file))
    except SyntaxError as exc:
        raise ModelDiscoveryError(
            f"{model_file}:{exc.lineno}: syntax error: {exc.msg}",
            hint="Fix the model file and try again.",
        ) from None
    constants = _module_constants(tree)
    classes = {
        node.name: _ClassDef(node, [_name_of(b) for b in node.bases], _methods(node))
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }
    if class_name is not None:
        if class_name not in classes:
            found = ", ".join(classes) or "none"
            raise ModelDiscoveryError(
                f"{model_file.name} has no class named {class_name!r} (classes found: {found})",
                hint="Fix `model` in mllib.toml or the NAME in model.py:NAME.",
            )
        return _info(model_file, class_name, classes, constants)
    candidates = [n for n in classes if set(REQUIRED_METHODS) <= _all_methods(n, classes)]
    # A base class in the same file that others extend is not itself the model.
    leaves = [n for n in candidates if not any(n in classes[o].bases for o in candidates if o != n)]
    if not leaves:
        raise ModelDiscoveryError(
            f"No model class found in {model_file.name}: a model class defines train() and predict() "
            "(and evaluate() to be evaluated)",
            hint="See `mllib init` for a working example.",
        )
    if len(leaves) > 1:
        names = ", ".join(leaves)
        raise ModelDiscoveryError(
            f"{model_file.name} defines {len(leaves)} model classes ({names}); mllib cannot tell which to use",
            hint=f'Pick one with `model = "{model_file.name}:{leaves[0]}"` in mllib.toml, '
            f"or pass {model_file.name}:{leaves[0]} on the command line.",
        )
    return _info(model_file, leaves[0], classes, constants)


def _info(
    file: Path, name: str, classes: dict[str, _ClassDef], constants: dict[str, Any]
) -> ModelInfo:
    params: dict[str, ParamSpec] = {}
    for cls_name in reversed(_lineage(name, classes)):  # base classes first, so subclasses override
        init = next(
            (
                n
                for n in classes[cls_name].node.body
                if isinstance(n, ast.FunctionDef) and n.name == "__init__"
            ),
            None,
        )
        if init is not None:
            params.update(_params_in(init, constants))
    return ModelInfo(file, name, params, _all_methods(name, classes))


def _lineage(name: str, classes: dict[str, _ClassDef]) -> list[str]:
    chain, todo = [], [name]
    while todo:
        current = todo.pop(0)
        if current in classes and current not in chain:
            chain.append(current)
            todo.extend(classes[current].bases)
    return chain


def _all_methods(name: str, classes: dict[str, _ClassDef]) -> set[str]:
    return set().union(*(classes[c].methods for c in _lineage(name, classes)))


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
    type_name = type_name_of(default) if known else "any"
    return ParamSpec(name, default, type_name, env, help_text, text)


def _literal(node: ast.expr, constants: dict[str, Any]) -> Any:
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise ValueError(ast.unparse(node)) from None


def _optional_literal(node: ast.expr | None) -> Any:
    if node is None:
        return None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
