"""The blob transfer primitive (code bundles now, dataset chunks later): only what the other side
lacks travels, and everything is verified by its sha256; plus the benchmark in its short mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mllib.store import LocalBlobStore, put_tree


def test_only_missing_blobs_travel_and_arrive_intact(agents, tmp_path):
    from mllib.agents.config import get_agent
    from mllib.agents.rpc import open_agent
    from mllib.agents.transfer import fetch_tree, send_blobs, send_tree

    folder = tmp_path / "bundle"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.py").write_text("print('a')\n" * 1000)
    (folder / "sub" / "b.bin").write_bytes(bytes(range(256)) * 4096)
    local = LocalBlobStore(tmp_path / "store")
    tree = put_tree(local, folder)
    with open_agent(get_agent("h0")) as agent:
        first = send_tree(agent, local, tree.sha256)
        assert first >= tree.size  # the files and the manifest (unless an earlier run sent them)
        assert send_tree(agent, local, tree.sha256) == 0  # nothing missing any more
        (folder / "a.py").write_text("print('changed')\n")
        changed = put_tree(local, folder)
        assert send_tree(agent, local, changed.sha256) < 1000  # only the changed file + manifest
        assert agent.call("missing", shas=[tree.sha256, changed.sha256]) == []
        assert send_blobs(agent, local, []) == 0

        back = LocalBlobStore(tmp_path / "back")
        assert fetch_tree(agent, back, changed.sha256) > 0
        assert fetch_tree(agent, back, changed.sha256) == 0
        for entry in changed.files:
            assert back.get_bytes(entry.sha256) == local.get_bytes(entry.sha256)


def test_transfer_benchmark_short_mode(lab):
    """The benchmark runs (short: 8 MB once) and reports both senders; figures are in the README."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "agents_transfer.py"
    out = subprocess.run(
        [sys.executable, str(script), "--size-mb", "8", "--repeat", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["sha256_ok"] and result["size_mib"] == 8.0
    assert set(result["median_mib_s"]) == {"mllib sftp", "mllib send_blobs", "scp"}
    assert all(v > 0 for v in result["median_mib_s"].values())
