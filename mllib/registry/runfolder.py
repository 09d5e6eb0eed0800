"""A run's own copy of its registry rows, `record.json` in its run folder, so that a lost or
damaged registry can be rebuilt from the run folders (`mllib doctor --repair`).

It is written when the run is recorded, when it ends, when its model becomes a version and when
an alias of that version changes: the runs row and the rows of the tables that belong to the
run, plus the dataset versions it read and the aliases naming its model version.
Metric points are left to the run's events.jsonl, which holds them all already; a run without
one (a remote run, synced from its agent) keeps them here too.

It is as durable as the registry rows it copies, no more: written whole (a temporary file
renamed over it, so a kill -9 leaves the old copy or the new), but not flushed to disk (fsync),
as the registry's own commits are not (SQLite's WAL with `synchronous = NORMAL`). A power cut
may lose the last seconds of both; a copy it leaves empty or cut short reads as none (`mllib
doctor` lists the folder). Flushing it cost each run two fsyncs, 1 to 20 ms each here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mllib.registry.db import Registry

RECORD_FILE = "record.json"
EVENTS_FILE = "events.jsonl"  # mllib.protocol.events.EVENTS_FILE (the registry imports no protocol)
FORMAT = 1
# Tables whose rows belong to one run (a `run_id` column), inserted after its `runs` row.
RUN_TABLES = ("params", "eval_metrics", "artifacts", "models", "run_datasets", "run_environments")
OPTIONAL_RUN_TABLES = ("agent_attempts", "agent_pins")  # features whose schema may be absent


def save_record(reg: Registry, run_id: str, *, fresh: bool = False) -> None:
    """Write the run's record.json (when its folder exists) from what the registry holds now.

    `fresh`: the run was inserted in this transaction with its params and nothing else, so only
    those two tables are read (the others hold no row of a run that new): one copy written each
    time a run is recorded, so two queries instead of a dozen."""
    from mllib.filemodes import write_private

    rows = reg.query("SELECT * FROM runs WHERE id = ?", (run_id,))
    if not rows or not rows[0].get("run_dir"):
        return
    run_dir = Path(rows[0]["run_dir"])
    if not run_dir.is_dir():
        return

    def rows_of(sql: str) -> list[dict[str, Any]]:
        return [] if fresh else reg.query(sql, (run_id,))

    tables: dict[str, list[dict[str, Any]]] = {"runs": rows}
    present = reg.tables
    for table in (*RUN_TABLES, *OPTIONAL_RUN_TABLES):
        if table in present:
            sql = f"SELECT * FROM {table} WHERE run_id = ?"
            tables[table] = reg.query(sql, (run_id,)) if table == "params" else rows_of(sql)
    tables["model_aliases"] = rows_of(  # the aliases naming its model version
        "SELECT a.* FROM model_aliases a JOIN models m ON a.name = m.name"
        " AND a.version = m.version WHERE m.run_id = ?"
    )
    tables["datasets"] = rows_of(
        "SELECT d.* FROM datasets d JOIN run_datasets r ON d.name = r.name "
        "AND d.version = r.version WHERE r.run_id = ?"
    )
    if not (run_dir / EVENTS_FILE).is_file():
        tables["metrics"] = rows_of("SELECT * FROM metrics WHERE run_id = ?")
    record = {"format": FORMAT, "tables": tables}
    write_private(run_dir / RECORD_FILE, json.dumps(record, default=str), durable=False)


def read_record(run_dir: Path) -> dict[str, list[dict[str, Any]]] | None:
    """The tables of a run folder's record.json; None when it has none (or an unreadable one)."""
    try:
        record = json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    tables = record.get("tables")
    return tables if isinstance(tables, dict) and tables.get("runs") else None
