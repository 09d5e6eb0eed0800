"""mllib's intended arrows as tables, and a checker that reads every module's imports with `ast`.

The README's Architecture section states these tables in words; tests/test_architecture.py holds
the code to them. Every import statement of every module (mllib and the agent program,
agents/mllib_agent) is classed by where it stands:

- `module`:   runs when the module is imported (top level, class bodies, top-level if/try);
- `function`: inside a function: a lazy import, which is how mllib imports heavy things;
- `typing`:   under `if TYPE_CHECKING:`, which never runs (an arrow for readers and checkers).

Each rule says which kinds it covers. To add one (a package's own arrows, say), add a row to
PACKAGES, LAYERS or RULES; a module that belongs to no package of PACKAGES fails the check.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

MODULE, FUNCTION, TYPING = "module", "function", "typing"
RUNS = frozenset({MODULE, FUNCTION})  # every import that executes
ALL = frozenset({MODULE, FUNCTION, TYPING})

# The core: modules every package may import, which import nothing of mllib but each other.
CORE = (
    "mllib._version", "mllib.errors", "mllib.encoding", "mllib.metric_values", "mllib.filemodes",
    "mllib.params", "mllib.tracking", "mllib.persistence", "mllib.discovery", "mllib.config",
    "mllib.project", "mllib.terminal", "mllib.identity", "mllib.plugins", "mllib.display",
    "mllib.safetext", "mllib.ranges", "mllib.redaction", "mllib.request_input", "mllib.userdirs",
    "mllib.locks", "mllib.filetail", "mllib.periods",
    "mllib.credentials",
    "mllib.error_reports", "mllib.sentry_plugin",
)  # fmt: skip

# Package -> its modules: a dotted name stands for the module and everything below it;
# "=mllib" is the `mllib` package module alone (the Python API of notebooks, mllib/__init__.py).
PACKAGES: dict[str, tuple[str, ...]] = {
    "core": CORE,
    "protocol": ("mllib.protocol",),
    "store": ("mllib.store",),
    "registry": ("mllib.registry",),
    "worker": ("mllib.worker",),
    "runtime": ("mllib.runtime",),
    "workspace": ("mllib.workspace",),
    "code_snapshot": ("mllib.code_snapshot",),
    "datasets": ("mllib.datasets",),
    "runs": ("mllib.runs",),
    "tuning": ("mllib.tuning",),
    "agents": ("mllib.agents",),
    "queue": ("mllib.queue",),
    "server": ("mllib.server",),
    "client": ("mllib.client",),
    "serving": ("mllib.serving",),
    "schedules": ("mllib.schedules",),
    "monitoring": ("mllib.monitoring",),
    "models": ("mllib.models",),
    "scaffold": ("mllib.scaffold",),
    "doctor": ("mllib.doctor",),
    "api": ("=mllib",),
    "dashboard": ("mllib.dashboard",),
    "cli": ("mllib.cli", "mllib.__main__"),
    "agent program": ("mllib_agent",),
}

# Package -> the packages it may import directly (besides itself and the core), lowest first. It
# may also import what those may (the table is closed under that): nothing else, so no package
# imports a higher one and there is no loop between packages. Covers every kind of import.
LAYERS: dict[str, tuple[str, ...]] = {
    "core": (),
    "protocol": (),
    "store": (),
    "registry": (),
    "worker": ("protocol",),
    "runtime": ("protocol",),
    "workspace": ("registry", "store", "protocol"),
    "code_snapshot": ("store",),
    "datasets": ("workspace",),
    "runs": ("datasets", "code_snapshot", "runtime"),
    "tuning": ("runs",),
    "agents": ("runs",),
    "queue": ("registry",),
    "server": ("agents", "queue", "models"),  # models: `models list|show` answered on the server
    "client": ("runs",),
    # agents: a deployment's replicas on agent hosts; client: what went live, told to the server
    "serving": ("runs", "worker", "agents", "client"),
    "schedules": ("serving",),
    "monitoring": ("schedules",),
    "models": ("serving",),
    "scaffold": (),
    "doctor": ("datasets",),
    "api": ("runs", "tuning"),
    "dashboard": ("agents", "serving", "client", "tuning"),
    "cli": (
        "dashboard",
        "models",
        "scaffold",
        "doctor",
        "api",
        "server",
        "client",
        "monitoring",
        "schedules",
    ),
    "agent program": ("runs", "serving"),  # serving: it starts a deployment's replicas
}


@dataclass(frozen=True)
class Rule:
    """Modules matching `who` (but not `unless`) never import what matches `never`; or, when a
    rule has no `never`, import of mllib only what matches `only` (besides their own package
    and the core).

    A selector is a package of PACKAGES, a module pattern (`mllib.runs`: it and the modules
    below it; `*` as in fnmatch) or a third-party library's top-level name (`docker`)."""

    why: str
    who: tuple[str, ...]
    never: tuple[str, ...] = ()
    only: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    kinds: frozenset[str] = ALL


# Where the heavy libraries may be imported (`mllib --help` imports none of them; ruff's
# banned-module-level-imports keeps them out of module level everywhere).
HEAVY: dict[str, tuple[str, ...]] = {
    "docker": ("mllib.runtime.engine", "mllib.runtime.docker", "mllib.runtime.images",
               "mllib.runtime.image_build", "mllib.runtime.base_image"),
    "paramiko": ("mllib.agents",),
    "litserve": ("mllib.serving.server",),
    "fastapi": ("mllib.serving", "mllib.server.app", "mllib.server.studies", "mllib.server.models",
                "mllib.server.dataset_routes"),
    "starlette": ("mllib.serving", "mllib.server.app"),
    "uvicorn": ("mllib.serving.server", "mllib.server.main"),
    "prometheus_client": ("mllib.serving", "mllib.server.metrics"),
    "sqlite_utils": ("mllib.registry",),
    "httpx": ("mllib.datasets.download", "mllib.serving", "mllib.dashboard", "mllib.client"),
    "cloudpickle": ("mllib.persistence",),
    "plotext": ("mllib.runs.plot",),
    "psutil": ("mllib.runtime.processes", "mllib.serving"),
    "torch": (), "numpy": (), "pandas": (), "sklearn": (),  # the model's, never mllib's
    "ray": ("mllib.runtime",), "psycopg": ("mllib.registry", "mllib.server"),
    "optuna": ("mllib.tuning.storage",),
    "sentry_sdk": ("mllib.sentry_plugin",), "textual": ("mllib.dashboard",),
}  # fmt: skip

RULES: tuple[Rule, ...] = (
    Rule("nothing imports mllib.cli", who=("*",), never=("cli",), unless=("cli",)),
    Rule("only the CLI imports the dashboard", who=("*",), never=("dashboard",),
         unless=("dashboard", "cli")),
    Rule("runtime and worker import only the protocol and the core", who=("runtime", "worker"),
         only=("protocol",)),
    Rule("the protocol imports only the core", who=("protocol",), only=()),
    Rule("datasets never import agents", who=("datasets",), never=("agents",)),
    Rule("tuning dispatches trials through mllib.runs' entry points, never a backend's own "
         "package: a trial runs wherever a run can", who=("tuning",), never=("agents",)),
    Rule("runs never import agents, not even lazily (backends are found by name in "
         "mllib.plugins)", who=("runs",), never=("agents",)),
    Rule("a server process never manages deployments", who=("mllib.serving.server",),
         never=("mllib.serving.control",)),
    Rule("the control plane starts servers as processes: it imports the server side only "
         "inside the function that serves in the foreground", who=("mllib.serving.control",),
         never=("mllib.serving.server",), kinds=frozenset({MODULE, TYPING})),
    Rule("the serving contract (spec, logs, apikeys, audit, clock, schema) imports neither half",
         who=tuple(f"mllib.serving.{m}" for m in ("spec", "logs", "apikeys", "audit", "clock",
                                                   "schema")),
         never=("mllib.serving.control", "mllib.serving.server")),
    Rule("textual only in mllib.dashboard", who=("*",), never=("textual",),
         unless=("dashboard",), kinds=RUNS),
    *(
        Rule(f"{lib} only in {', '.join(where) or 'the model code, never in mllib'}",
             who=("*",), never=(lib,), unless=where, kinds=RUNS)
        for lib, where in HEAVY.items()
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Import:
    importer: str  # dotted module name
    target: str  # dotted module name (of mllib or the agent program), or a library's top name
    kind: str
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def read_modules(
    root: Path, packages: Iterable[str] = ("mllib", "agents/mllib_agent")
) -> dict[str, Path]:
    """Dotted name -> file, for every module below `root`'s package folders (`agents/mllib_agent`
    is the agent program, imported as `mllib_agent`)."""
    found = {}
    for package in packages:
        base = root / package
        for path in sorted(base.rglob("*.py")):
            found[module_name(base.parent, path)] = path
    return found


def imports(modules: dict[str, Path]) -> Iterator[Import]:
    """Every import statement of `modules`, resolved to the module it loads."""
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        yield from _visit(tree.body, name, package, MODULE, modules)


def _visit(body: list[ast.stmt], name: str, package: str, kind: str, modules: dict[str, Path]):
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from _visit(
                node.body, name, package, TYPING if kind == TYPING else FUNCTION, modules
            )
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _visit(node.body, name, package, TYPING, modules)
            yield from _visit(node.orelse, name, package, kind, modules)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(name, _resolve(alias.name, None, modules), kind, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            for alias in node.names:
                yield Import(name, _resolve(base, alias.name, modules), kind, node.lineno)
        else:
            for field in ("body", "orelse", "finalbody", "handlers", "cases"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from _visit(children, name, package, kind, modules)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = ".".join(parts[: len(parts) - node.level + 1])
    return f"{base}.{node.module}" if node.module else base


def _resolve(module: str, attribute: str | None, modules: dict[str, Path]) -> str:
    """`from A import B` loads module A.B when there is one, else module A; a library import is
    named by its top-level package."""
    if attribute is not None and f"{module}.{attribute}" in modules:
        return f"{module}.{attribute}"
    top = module.split(".")[0]
    if top not in modules:  # not a package of the tree read
        return top
    while module and module not in modules:
        module = module.rpartition(".")[0]
    return module


def package_of(module: str) -> str | None:
    """The package of PACKAGES a module belongs to (None: a library, or an unknown module)."""
    for package, patterns in PACKAGES.items():
        if any(_matches(module, p) for p in patterns):
            return package
    return None


def _matches(module: str, pattern: str) -> bool:
    if pattern.startswith("="):
        return module == pattern[1:]
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(module, pattern)
    return module == pattern or module.startswith(pattern + ".")


def selected(module: str, selectors: tuple[str, ...]) -> bool:
    package = package_of(module)
    for selector in selectors:
        if (
            selector == "*"
            or selector == package
            or (selector not in PACKAGES and _matches(module, selector))
        ):
            return True
    return False


def reachable(package: str, layers: dict[str, tuple[str, ...]] = LAYERS) -> set[str]:
    """The packages `package` may import: itself, the core, and what LAYERS lets it reach."""
    seen = {package, "core"}
    todo = list(layers[package])
    while todo:
        below = todo.pop()
        if below not in seen:
            seen.add(below)
            todo.extend(layers[below])
    return seen


def violations(found: Iterable[Import], modules: dict[str, Path]) -> list[str]:
    """Every import that breaks a rule of LAYERS or RULES, and every module of no package."""
    problems = [f"{m}: belongs to no package of PACKAGES" for m in modules if package_of(m) is None]
    found = list(dict.fromkeys(found))  # `from A import B, C` is one arrow
    for imp in found:
        where = (
            f"{modules[imp.importer]}:{imp.line}: {imp.importer} imports {imp.target} ({imp.kind})"
        )
        source, target = package_of(imp.importer), package_of(imp.target)
        mine = target is not None and imp.target in modules
        if source is not None and mine and target not in reachable(source):
            problems.append(f"{where}: {source} may not import {target} (LAYERS)")
        for rule in RULES:
            if imp.kind not in rule.kinds or not selected(imp.importer, rule.who):
                continue
            if rule.unless and selected(imp.importer, rule.unless):
                continue
            if rule.never:
                broken = _target_selected(imp.target, rule.never)
            else:  # an `only` rule, about mllib's own modules
                broken = mine and target not in {source, "core", *rule.only}
            if broken:
                problems.append(f"{where}: {rule.why}")
    return problems


def _target_selected(target: str, selectors: tuple[str, ...]) -> bool:
    if any(s == target for s in selectors):  # a library by its top-level name
        return True
    return package_of(target) is not None and selected(target, selectors)


def cycles(
    found: Iterable[Import], node: Callable[[str], str | None], kinds: frozenset[str]
) -> list[list[str]]:
    """Strongly connected groups (of more than one node) of the graph whose edges are the
    imports of `kinds`, between nodes `node(module)` (None: left out)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for imp in found:
        a, b = node(imp.importer), node(imp.target)
        if imp.kind in kinds and a and b and a != b:
            graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return groups


# Per-user places: worked out in one module only, so MLLIB_HOME (or the platform's folders) move
# every one of them. Elsewhere these are findings: the home folder (`Path.home()`, a "~" path
# expanded), and the variables that point at per-user folders read from the environment.
USER_DIRS_MODULE = "mllib.userdirs"
USER_DIR_VARIABLES = re.compile(r"^(HOME|MLLIB_HOME|PYENV_ROOT|XDG_[A-Z_]+|LOCALAPPDATA|APPDATA)$")


def per_user_paths(modules: dict[str, Path]) -> list[str]:
    """`module:line: what` for each per-user path worked out outside mllib.userdirs."""
    found = []
    for name, path in modules.items():
        if name == USER_DIRS_MODULE:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in sorted(ast.walk(tree), key=lambda n: getattr(n, "lineno", 0)):
            what = _per_user_path(node)
            if what:
                found.append(f"{name}:{node.lineno}: {what} (use {USER_DIRS_MODULE})")
    return found


def _per_user_path(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if called == "home" and not node.args:
            return "Path.home()"
        first = node.args[0] if node.args else None
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            if called in ("Path", "PurePath", "expanduser") and first.value.startswith("~"):
                return f"{called}({first.value!r})"
            if called in ("get", "getenv") and USER_DIR_VARIABLES.match(first.value):
                return f"reads ${first.value}"
    if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
        key = node.slice.value if isinstance(node.slice, ast.Constant) else None
        if isinstance(key, str) and USER_DIR_VARIABLES.match(key):
            return f"reads ${key}" if "environ" in ast.unparse(node.value) else None
    return None
