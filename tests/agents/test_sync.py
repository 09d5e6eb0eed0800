"""Syncing an agent's records: a sync cut off at any request, then resumed, ends in the same state
as one that was never interrupted; syncing again changes nothing."""

from __future__ import annotations

import pytest
from helpers import detached_run, table_dump, wait_finished, workspace

from mllib.agents.connection import AgentUnreachable


class CutOff:
    """An agent client whose connection 'drops' at the n-th call of one method."""

    def __init__(self, client, method: str, at: int) -> None:
        self._client, self._method, self._left = client, method, at
        self.spec, self.conn, self.root, self.hello = (
            client.spec,
            client.conn,
            client.root,
            client.hello,
        )

    def call(self, method, **params):
        if method == self._method:
            self._left -= 1
            if self._left == 0:
                self._client.close()
                raise AgentUnreachable("the connection dropped (test)")
        return self._client.call(method, **params)


def _forget_locally(ws, run_id: str) -> None:
    """Put the local registry back to 'run started, nothing synced yet' (store blobs removed too)."""
    reg = ws.registry
    shas = [
        r["sha256"] for r in reg.query("SELECT sha256 FROM artifacts WHERE run_id = ?", (run_id,))
    ]
    with reg.transaction():
        for table in ("models", "artifacts", "eval_metrics", "metrics"):
            reg.conn.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
        reg.conn.execute(
            "UPDATE runs SET status = 'running', failure_class = NULL, error = NULL, ended_at = NULL, "
            "started_at = NULL, phase = NULL WHERE id = ?",
            (run_id,),
        )
        reg.conn.execute(
            "UPDATE agent_attempts SET status = 'running', ended_at = NULL, failure_class = NULL, "
            "reason = NULL WHERE run_id = ?",
            (run_id,),
        )
        reg.conn.execute("DELETE FROM agent_sync")
    from mllib.store import read_tree

    for sha in shas:
        for entry in read_tree(ws.store, sha).files:
            ws.store.path(entry.sha256).unlink(missing_ok=True)
        ws.store.path(sha).unlink(missing_ok=True)


@pytest.mark.parametrize("method,at", [("pull", 1), ("blob_paths", 1), ("changes", 2)])
def test_interrupted_sync_resumes_to_the_same_state(agents, project, method, at):
    from mllib.agents.config import get_agent
    from mllib.agents.rpc import open_agent
    from mllib.agents.sync import sync_agent

    run_id = detached_run(project, "--steps=300", "--evaluate")
    record = wait_finished(project, run_id)
    assert record.status == "succeeded"
    ws = workspace(project)
    spec = get_agent(record.host)
    with open_agent(spec) as agent:
        sync_agent(ws, agent)
    whole = table_dump(project, run_id)
    assert len(whole["metrics"]) == 300 and whole["models"]

    _forget_locally(ws, run_id)
    with open_agent(spec) as agent, pytest.raises(AgentUnreachable):
        sync_agent(ws, CutOff(agent, method, at), batch=1)
    half = table_dump(project, run_id)
    assert half["run"][0]["status"] == "running"  # never finished without its artifacts

    with open_agent(spec) as agent:
        sync_agent(ws, agent)
        assert table_dump(project, run_id) == whole
        sync_agent(ws, agent)
        assert table_dump(project, run_id) == whole
    model = whole["artifacts"][0]["sha256"]
    assert ws.store.has(model)
