"""The registry database: migrations, WAL, and many processes opening a new one at once."""

import sqlite3
import subprocess
import sys

from mllib.plugins import MIGRATIONS
from mllib.registry import Registry
from mllib.registry.schema import migration_sets

OPEN = "import sys; from pathlib import Path; from mllib.registry import Registry; Registry.open(Path(sys.argv[1])).close()"


def test_open_creates_the_schema_once_in_wal_mode(tmp_path):
    path = tmp_path / "registry.db"
    Registry.open(path).close()
    reg = Registry.open(path)  # a second open finds nothing pending
    assert reg.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r["name"] for r in reg.query("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"runs", "params", "metrics", "eval_metrics", "artifacts", "models"} <= tables
    applied = reg.query("SELECT migration_set, name FROM _sqlite_migrations")
    assert ("mllib.registry", "0001_runs_params_metrics_artifacts_models") in {
        (r["migration_set"], r["name"]) for r in applied
    }
    assert not any(m.pending(reg.db) for m in migration_sets(MIGRATIONS))


def test_many_processes_opening_a_new_registry_at_once_all_succeed(tmp_path):
    path = tmp_path / "registry.db"
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN, str(path)], stderr=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, errors
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT COUNT(*) FROM _sqlite_migrations").fetchone()[0]
    assert rows == sum(len(m._migrations) for m in migration_sets(MIGRATIONS))


def test_a_failed_write_transaction_leaves_nothing(tmp_path):
    reg = Registry.open(tmp_path / "registry.db")
    try:
        with reg.transaction():
            reg.db["runs"].insert(
                {"id": "x", "model": "m", "action": "train", "status": "queued", "created_at": "t"}
            )
            raise RuntimeError("crash in the middle")
    except RuntimeError:
        pass
    assert reg.query("SELECT COUNT(*) AS n FROM runs")[0]["n"] == 0


def test_opening_the_registry_does_not_import_pandas_yet_pandas_still_imports(tmp_path):
    probe = (
        "import sys; from pathlib import Path; from mllib.registry import Registry;"
        "Registry.open(Path(sys.argv[1])); print('pandas' in sys.modules, 'numpy' in sys.modules);"
        "import pandas; print(pandas.DataFrame({'a': [1]}).shape)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "r.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False", "(1,", "1)"]


def test_sqlite_utils_import_hides_numpy_only_while_no_other_thread_runs():
    """Hiding numpy from sqlite-utils sets sys.modules["numpy"] = None for every thread: a
    thread importing numpy right then fails (a model server's predict thread did)."""
    import subprocess
    import sys

    script = """
import sys, threading
from mllib.registry.sqlite import import_sqlite_utils
if sys.argv[1] == "thread":
    stop = threading.Event()
    threading.Thread(target=stop.wait).start()
import_sqlite_utils()
print("numpy" in sys.modules)
if sys.argv[1] == "thread":
    stop.set()
"""
    alone = subprocess.run([sys.executable, "-c", script, "alone"], capture_output=True, text=True)
    busy = subprocess.run([sys.executable, "-c", script, "thread"], capture_output=True, text=True)
    assert alone.stdout.strip() == "False", alone.stderr  # the fast path: numpy never loaded
    assert busy.stdout.strip() == "True", busy.stderr  # imported normally, never hidden
