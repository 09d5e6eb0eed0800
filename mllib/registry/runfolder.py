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


def save_record(reg: Registry, run_id: str) -> None:
    """Write the run's record.json (when its folder exists) from what the registry holds now."""
    from mllib.filemodes import write_private

    rows = reg.query("SELECT * FROM runs WHERE id = ?", (run_id,))
    if not rows or not rows[0].get("run_dir"):
        return
    run_dir = Path(rows[0]["run_dir"])
    if not run_dir.is_dir():
        return
    tables: dict[str, list[dict[str, Any]]] = {"runs": rows}
    present = set(reg.db.table_names())
    for table in (*RUN_TABLES, *OPTIONAL_RUN_TABLES):
        if table in present:
            tables[table] = reg.query(f"SELECT * FROM {table} WHERE run_id = ?", (run_id,))
    tables["model_aliases"] = reg.query(  # the aliases naming its model version
        "SELECT a.* FROM model_aliases a JOIN models m ON a.name = m.name"
        " AND a.version = m.version WHERE m.run_id = ?",
        (run_id,),
    )
    tables["datasets"] = reg.query(
        "SELECT d.* FROM datasets d JOIN run_datasets r ON d.name = r.name "
        "AND d.version = r.version WHERE r.run_id = ?",
        (run_id,),
    )
    if not (run_dir / EVENTS_FILE).is_file():
        tables["metrics"] = reg.query("SELECT * FROM metrics WHERE run_id = ?", (run_id,))
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
