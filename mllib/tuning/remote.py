"""Studies kept on a team server, seen from any machine their user logs in from.

A study started with `--remote` while a team server is configured keeps its Optuna journal on the
server (mllib.tuning.storage.server_storage). Its mllib record (settings, space, fixed params,
status: the `studies` row) goes with it, as a user attribute of the Optuna study, and each trial
names its run (user attribute `run_id`). So on another machine, in a checkout of the same
project, `mllib tune show/list` find the study on the server, and `mllib tune resume` takes it
up there: the record is copied into that machine's registry and the study goes on from its
journal (finished trials kept; the trials the dead driver left running failed and tried again).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mllib.errors import MllibError, NotFoundError
from mllib.tuning.records import StudyRecord, create_study, get_study, list_studies

if TYPE_CHECKING:
    import optuna

    from mllib.workspace import Workspace

RECORD_ATTR = "mllib.study"  # the study's `studies` row, on the Optuna study kept on the server
RUN_ATTR = "run_id"  # the run a trial is, on each trial of a study kept on the server


def on_server(study: StudyRecord) -> bool:
    """Whether the study's journal is kept on a team server."""
    return bool(study.settings.get("server"))


def publish(optuna_study: optuna.Study, study: StudyRecord) -> None:
    """Keep `study`'s record with its journal on the server (a no-op for a local study)."""
    if on_server(study):
        optuna_study.set_user_attr(RECORD_ATTR, study.to_row())


def shared_record(optuna_study: optuna.Study, study: StudyRecord) -> StudyRecord:
    """`study` as every machine sees it: of a study kept on a server, the record its drivers keep
    with its journal there (how it stands: another machine may drive it, or have finished it),
    else `study` itself."""
    if not on_server(study):
        return study
    row = optuna_study.user_attrs.get(RECORD_ATTR)
    return StudyRecord.from_row(row) if isinstance(row, dict) else study


def find_study(ws: Workspace, name: str) -> StudyRecord:
    """The study `name`: this project's record of it, else the one kept on the configured team
    server (read only: nothing is written here)."""
    try:
        return get_study(ws.registry, name)
    except NotFoundError as missing:
        try:
            found = server_record(ws, name)
        except MllibError:  # not logged in there, or it does not answer: not found here
            found = None
        if found is None:
            raise missing from None
        return found


def adopt(ws: Workspace, name: str) -> StudyRecord:
    """The study `name`, recorded in this project's registry (copied from the server when it was
    started on another machine), so this machine can drive it."""
    study = find_study(ws, name)
    if not ws.registry.query("SELECT 1 FROM studies WHERE name = ?", (name,)):
        create_study(ws.registry, study)
    return study


def server_record(ws: Workspace, name: str) -> StudyRecord | None:
    """The record of study `name` kept on the configured team server; None without a server or
    such a study of this user's there."""
    from mllib.credentials import configured_server
    from mllib.tuning.storage import server_storage

    url = configured_server(ws.project.config)
    if url is None:
        return None
    storage = server_storage(url, name)
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    row = storage.get_study_user_attrs(study_id).get(RECORD_ATTR)
    return StudyRecord.from_row(row) if isinstance(row, dict) else None


def server_studies(ws: Workspace) -> list[StudyRecord]:
    """The studies this user keeps on the configured team server that this project has no record
    of (started on another machine); [] without a server, or when it does not answer now."""
    from mllib.credentials import configured_server
    from mllib.plugins import SERVER_STUDIES, load

    url = configured_server(ws.project.config)
    if url is None:
        return []
    local = {s.name for s in list_studies(ws.registry)}
    try:
        listed: list[dict[str, Any]] = load(SERVER_STUDIES)(url)
        found = [server_record(ws, s["name"]) for s in listed if s["name"] not in local]
    except MllibError:
        return []  # not logged in, or the server is down: the project's own studies still list
    return [s for s in found if s is not None]
