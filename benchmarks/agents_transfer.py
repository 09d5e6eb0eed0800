"""Benchmark: sending a file to an agent over mllib's SFTP path vs `scp`, side by side, on loopback.

Makes its own throwaway SSH host (an OS user and an sshd on a random loopback port; needs root,
openssh-server and python3-venv, as scripts/test.sh installs), then alternates the two senders
`--repeat` times on the same random file and reports median MiB/s. Goal: mllib >= 0.7x scp.

    bash scripts/bench.sh agents            # full: 200 MB, 5 rounds
    python benchmarks/agents_transfer.py --size-mb 8 --repeat 1 --json   # short (the test suite)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "agents"))

from sshlab import Lab, missing_prerequisite


def _sha256(path: Path) -> str:
    from mllib.store.blobs import hash_file

    return hash_file(path)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    reason = missing_prerequisite()
    if reason:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2

    from mllib.agents import transfer
    from mllib.agents.api import add_agent
    from mllib.agents.config import get_agent
    from mllib.agents.hostkeys import known_hosts_path
    from mllib.agents.rpc import open_agent
    from mllib.store import LocalBlobStore

    lab = Lab.create(1)
    work = Path(tempfile.mkdtemp(prefix="mllib-bench-"))
    os.environ["MLLIB_HOME"] = str(work / "home")
    try:
        host = lab.hosts[0]
        add_agent("bench", **lab.spec_args(host), trust_host_key=True)
        source = work / "payload.bin"
        with open(source, "wb") as handle:
            for _ in range(args.size_mb):
                handle.write(os.urandom(1 << 20))
        size = source.stat().st_size
        want = _sha256(source)
        store = LocalBlobStore(work / "store")
        blob = store.put_file(source)
        dest = host.home / "bench.bin"
        times: dict[str, list[float]] = {"mllib sftp": [], "mllib send_blobs": [], "scp": []}
        with open_agent(get_agent("bench")) as agent:
            for _ in range(args.repeat):
                started = time.perf_counter()
                transfer.put_file(agent.conn.sftp, source, str(dest))
                times["mllib sftp"].append(time.perf_counter() - started)
                assert _sha256(dest) == want, "mllib's upload arrived corrupt"
                dest.unlink()

                agent.conn.run(["rm", "-rf", f"{agent.root}/store/objects/{blob.sha256[:2]}"])
                started = time.perf_counter()
                sent = transfer.send_blobs(agent, store, [blob.sha256])
                times["mllib send_blobs"].append(time.perf_counter() - started)
                assert sent == size

                started = time.perf_counter()
                subprocess.run(
                    [
                        "scp",
                        "-q",
                        "-i",
                        str(lab.key),
                        "-P",
                        str(host.port),
                        "-o",
                        f"UserKnownHostsFile={known_hosts_path()}",
                        "-o",
                        "StrictHostKeyChecking=yes",
                        "-o",
                        "BatchMode=yes",
                        str(source),
                        f"{host.user}@127.0.0.1:{dest}",
                    ],
                    check=True,
                )
                times["scp"].append(time.perf_counter() - started)
                assert _sha256(dest) == want, "scp's upload arrived corrupt"
                dest.unlink()
        mib = size / (1 << 20)
        result = {
            "size_mib": round(mib, 1),
            "repeat": args.repeat,
            "median_mib_s": {k: round(mib / statistics.median(v), 1) for k, v in times.items()},
        }
        result["ratio_vs_scp"] = {
            k: round(v / result["median_mib_s"]["scp"], 2)
            for k, v in result["median_mib_s"].items()
            if k != "scp"
        }
        result["sha256_ok"] = True
        if args.json:
            print(json.dumps(result))
        else:
            print(f"Sending {mib:.0f} MiB to an agent on loopback, median of {args.repeat}:")
            for name, value in result["median_mib_s"].items():
                ratio = result["ratio_vs_scp"].get(name)
                print(
                    f"  {name:<18} {value:>8.1f} MiB/s" + (f"   {ratio:.2f}x scp" if ratio else "")
                )
        return 0
    finally:
        lab.close()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
