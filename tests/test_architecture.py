"""The arrows of the README's Architecture section hold: read from every module's imports (module
level, in functions, and under TYPE_CHECKING; tests/architecture.py says which rule covers
which), so a change that breaks one fails here. The checker's own tests plant each kind of
wrong arrow in a small tree and see it caught."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests import architecture as arch
from tests.architecture import FUNCTION, MODULE, RUNS, TYPING

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[arch.Import]]:
    modules = arch.read_modules(ROOT)
    return modules, list(arch.imports(modules))


def test_every_import_follows_the_layers_and_the_rules(graph) -> None:
    modules, found = graph
    assert arch.violations(found, modules) == []


def test_no_import_cycle_between_packages(graph) -> None:
    _, found = graph
    assert arch.cycles(found, arch.package_of, RUNS | {TYPING}) == []


def test_no_import_cycle_between_modules_of_any_kind(graph) -> None:
    """Not at import time, nor through lazy imports, nor for the type checker: a loop that an
    import inside a function or under TYPE_CHECKING hides still means a missing layer."""
    _, found = graph
    module = lambda name: name if name.startswith(("mllib", "mllib_agent")) else None  # noqa: E731
    assert arch.cycles(found, module, arch.ALL) == []


def test_the_layer_table_is_closed_and_acyclic() -> None:
    assert set(arch.LAYERS) == set(arch.PACKAGES)
    for package, below in arch.LAYERS.items():
        assert set(below) <= set(arch.PACKAGES), package
        for lower in below:  # a package reached from below never reaches back up
            assert package not in arch.reachable(lower), (package, lower)


def test_the_checker_sees_every_module_and_every_kind_of_import(graph) -> None:
    modules, found = graph
    assert "mllib.runs.backend" in modules and "mllib_agent.server" in modules
    kinds = {(i.importer, i.target, i.kind) for i in found}
    assert ("mllib.runs.local", "mllib.runs.backend", MODULE) in kinds
    assert ("mllib.agents.backend", "mllib.agents.supervise", FUNCTION) in kinds
    assert ("mllib.workspace", "mllib.registry", TYPING) in kinds
    assert ("mllib.runtime.engine", "docker", FUNCTION) in kinds
    assert ("mllib.worker.main", "mllib.tracking", MODULE) in kinds  # `from mllib import tracking`


# -- the checker's own tests: a small tree with wrong arrows -------------------------------------
WRONG = {
    "mllib/__init__.py": "",
    "mllib/errors.py": "",
    "mllib/cli/__init__.py": "import mllib.runs.api\n",
    "mllib/runs/__init__.py": "",
    "mllib/runs/api.py": """
        from mllib.errors import MllibError

        def start():
            from mllib.agents.backend import AgentsBackend  # lazy, still an arrow
    """,
    "mllib/agents/__init__.py": "",
    "mllib/agents/backend.py": "from mllib.runs import api\n",
    "mllib/datasets/__init__.py": """
        from typing import TYPE_CHECKING

        if TYPE_CHECKING:
            from mllib.agents.backend import AgentsBackend
    """,
    "mllib/runtime/__init__.py": "from mllib.runs.api import start\n",
    "mllib/worker/__init__.py": "import mllib.cli\n",
    "mllib/registry/__init__.py": """
        def open():
            import textual
            import sqlite_utils
    """,
    "mllib/dashboard/__init__.py": "import textual\nfrom mllib.runs import api\n",
    "mllib/stray.py": "",
}


@pytest.fixture
def wrong(tmp_path: Path) -> list[str]:
    for name, text in WRONG.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    modules = arch.read_modules(tmp_path, ["mllib"])
    return arch.violations(list(arch.imports(modules)), modules)


def _found(problems: list[str], importer: str, rule: str) -> bool:
    return any(f" {importer} imports" in p and p.endswith(rule) for p in problems)


def test_the_checker_catches_each_kind_of_wrong_arrow(wrong: list[str]) -> None:
    assert _found(wrong, "mllib.runs.api", "(LAYERS)")  # a lazy upward import
    assert _found(
        wrong, "mllib.runs.api", "not even lazily (backends are found by name in mllib.plugins)"
    )
    assert _found(wrong, "mllib.datasets", "datasets never import agents")  # under TYPE_CHECKING
    assert _found(
        wrong, "mllib.runtime", "runtime and worker import only the protocol and the core"
    )
    assert _found(wrong, "mllib.worker", "nothing imports mllib.cli")
    assert _found(wrong, "mllib.registry", "textual only in mllib.dashboard")
    assert not _found(wrong, "mllib.registry", "sqlite_utils only in mllib.registry")
    assert not any(" mllib.dashboard imports textual" in p for p in wrong)
    assert not any(" mllib.agents.backend imports" in p for p in wrong)  # agents sit above runs
    assert "mllib.stray: belongs to no package of PACKAGES" in wrong


def test_the_checker_finds_loops(tmp_path: Path) -> None:
    for name, text in {
        "mllib/__init__.py": "",
        "mllib/runs/__init__.py": "",
        "mllib/runs/a.py": "def f():\n    from mllib.runs import b\n",
        "mllib/runs/b.py": "from mllib.runs import a\n",
    }.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    modules = arch.read_modules(tmp_path, ["mllib"])
    found = list(arch.imports(modules))
    assert arch.cycles(found, str, RUNS) == [["mllib.runs.a", "mllib.runs.b"]]
    assert arch.cycles(found, str, frozenset({MODULE})) == []  # lazy: no loop at import time


def test_per_user_paths_are_worked_out_in_userdirs_alone() -> None:
    """MLLIB_HOME moves every per-user file only while no other module finds its own place."""
    assert arch.per_user_paths(arch.read_modules(ROOT)) == []


def test_the_checker_finds_each_way_to_a_per_user_path(tmp_path: Path) -> None:
    planted = """
        import os
        from pathlib import Path

        A = Path.home() / ".mllib"
        B = Path("~/.config/mllib").expanduser()
        C = os.path.expanduser("~/.cache")
        D = os.environ.get("XDG_CACHE_HOME")
        E = os.getenv("MLLIB_HOME")
        F = os.environ["HOME"]
        G = Path(os.environ.get("DATA", "x")).expanduser()  # a path the user gave: fine
        os.environ["MLLIB_HOME"] = "/srv/server"  # setting it for a child: fine
    """
    (tmp_path / "mllib").mkdir()
    for name in ("stray.py", "userdirs.py"):
        (tmp_path / "mllib" / name).write_text(textwrap.dedent(planted).lstrip())
    found = arch.per_user_paths(arch.read_modules(tmp_path, ["mllib"]))
    assert [line.split(" (use")[0] for line in found] == [
        "mllib.stray:4: Path.home()",
        "mllib.stray:5: Path('~/.config/mllib')",
        "mllib.stray:6: expanduser('~/.cache')",
        "mllib.stray:7: reads $XDG_CACHE_HOME",
        "mllib.stray:8: reads $MLLIB_HOME",
        "mllib.stray:9: reads $HOME",
    ]
