"""Tuning studies kept on the team server: each study's Optuna journal in the server's database.

`mllib tune --remote` with a team server configured keeps its study here rather than in a file
on the laptop, so the study is the same from every machine its user logs in from. Optuna's
JournalStorage replays an append-only log of operations (create a trial, set a param, report a
value...); the server stores that log as rows `(user, study, seq)` and answers two requests:
append a batch of entries (in one transaction, numbered after the last, so writers from several
machines see one order) and read the entries after a number. A batch carries a key: a retry of
an append whose answer was lost is not appended twice. Each user sees only their own studies.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import json
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from mllib.registry.runs import now
from mllib.registry.schema import new_set
from mllib.server.submit import Conflict

if TYPE_CHECKING:
    import sqlite_utils
    from fastapi import FastAPI

    from mllib.registry.db import Registry
    from mllib.server.context import ServerContext

STUDY_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"
MAX_READ = 10_000  # entries in one answer; a reader asks again after the last it got
LOCK_CLASS = 7244902  # PostgreSQL advisory lock class of appends (the registry's is 7244901)


@cache
def migrations() -> "sqlite_utils.Migrations":
    """Studies' journals (a team server's database applies this set; mllib.plugins)."""
    migrations_ = new_set("mllib.server.studies")

    @migrations_(name="0001_study_journal")
    def initial(db: "sqlite_utils.Database") -> None:
        db.table("study_journal").create(
            {
                "user": str,
                "study": str,
                "seq": int,  # 0, 1, 2...: the entry's place in the study's log
                "entry": str,  # JSON: one Optuna journal operation
                "batch": str,  # the append's key, on its first entry only (a retry finds it)
                "created_at": str,
            },
            pk=("user", "study", "seq"),
            not_null={"entry", "created_at"},
            foreign_keys=[("user", "users", "name")],
        )
        db.table("study_journal").create_index(["user", "study", "batch"], unique=True)

    return migrations_


class JournalMoved(Conflict):
    """An append made on condition that the journal held so many entries, when it held more."""


def append(
    reg: "Registry",
    user: str,
    study: str,
    entries: list[Any],
    batch: str,
    expect: int | None = None,
) -> int:
    """Append `entries` to `user`'s journal of `study` after its last; returns how many the
    journal holds. A batch already appended (a retried request) is not appended again. With
    `expect`, only if the journal holds exactly that many entries (else JournalMoved): a writer
    that decided from what it read appends only if nobody appended since (mllib.tuning.driver
    asks for a trial so, and two machines driving one study never go past its trials)."""
    with reg.transaction():
        if reg.is_postgres:  # appends to one journal wait for each other (SQLite: BEGIN IMMEDIATE)
            key = f"{user}/{study}"
            reg.conn.execute(f"SELECT pg_advisory_xact_lock({LOCK_CLASS}, hashtext(?))", (key,))
        if not reg.query(
            'SELECT 1 FROM study_journal WHERE "user" = ? AND study = ? AND batch = ?',
            (user, study, batch),
        ):
            start = _count(reg, user, study)
            if expect is not None and start != expect:
                raise JournalMoved(
                    f"The journal of study {study} holds {start} entries, not {expect}",
                    hint=f"Read it again from entry {expect} and decide again.",
                )
            stamp = now()
            reg.db.table("study_journal").insert_all(
                {
                    "user": user,
                    "study": study,
                    "seq": start + i,
                    "entry": json.dumps(entry),
                    "batch": batch if i == 0 else None,
                    "created_at": stamp,
                }
                for i, entry in enumerate(entries)
            )
        return _count(reg, user, study)


def read(reg: "Registry", user: str, study: str, after: int) -> list[Any]:
    """The entries of `user`'s journal of `study` from number `after` on, in order (at most
    MAX_READ)."""
    rows = reg.query(
        'SELECT entry FROM study_journal WHERE "user" = ? AND study = ? AND seq >= ?'
        f" ORDER BY seq LIMIT {MAX_READ}",
        (user, study, after),
    )
    return [json.loads(row["entry"]) for row in rows]


def studies(reg: "Registry", user: str) -> list[dict[str, Any]]:
    """`user`'s studies on the server: name, entries, first and last written."""
    return reg.query(
        "SELECT study AS name, COUNT(*) AS entries, MIN(created_at) AS created_at,"
        ' MAX(created_at) AS updated_at FROM study_journal WHERE "user" = ?'
        " GROUP BY study ORDER BY MIN(created_at) DESC, study",
        (user,),
    )


def _count(reg: "Registry", user: str, study: str) -> int:
    rows = reg.query(
        'SELECT COUNT(*) AS n FROM study_journal WHERE "user" = ? AND study = ?', (user, study)
    )
    return int(rows[0]["n"])


# -- the HTTP API (joined to the server's app by mllib.server.app) -------------------------------
class JournalAppend(BaseModel):
    """Entries to append to a study's journal, and the append's key (a retry sends the same)."""

    model_config = ConfigDict(extra="forbid")
    entries: list[dict[str, Any]] = Field(..., max_length=100_000)
    batch: str = Field(..., min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    expect: int | None = Field(
        None, ge=0, le=2**62, description="Append only if the journal holds this many (else 409)"
    )


def add_routes(app: "FastAPI", ctx: "ServerContext", who: Callable[..., Any], prefix: str) -> None:
    """The studies' routes on `app`; `who` is the app's dependency giving the request's user."""
    from fastapi import Depends, Path, Query

    Who = Annotated[Any, Depends(who)]
    Study = Annotated[str, Path(pattern=STUDY_NAME)]

    @app.get(f"{prefix}/studies", tags=["studies"])
    def list_studies(user: Who) -> list[dict[str, Any]]:
        """Your studies kept on this server (`mllib tune --remote`), newest first."""
        with ctx.registry() as reg:
            return studies(reg, user.name)

    @app.get(f"{prefix}/studies/{{study}}/journal", tags=["studies"])
    def read_journal(
        study: Study, user: Who, after: Annotated[int, Query(ge=0, le=2**62)] = 0
    ) -> dict[str, Any]:
        """The study's journal entries from number `after` on, at most 10,000 an answer (none:
        a study not begun yet)."""
        with ctx.registry() as reg:
            return {"entries": read(reg, user.name, study, after)}

    @app.post(f"{prefix}/studies/{{study}}/journal", tags=["studies"])
    def append_journal(study: Study, body: JournalAppend, user: Who) -> dict[str, int]:
        """Append entries to the study's journal; `count`: how many it holds after. With
        `expect`, 409 when it does not hold that many before (nothing is appended)."""
        with ctx.registry() as reg:
            count = append(reg, user.name, study, body.entries, body.batch, body.expect)
            return {"count": count}
