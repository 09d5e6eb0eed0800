"""`python -m mllib.datasets missing|receive|materialize`: the peer side of mllib.datasets.transfer.

Runs on an agent host with only the standard library and mllib; reads stdin, writes JSON or
lines to stdout, and exits non-zero with a one-line message on stderr when something is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mllib.datasets.chunkstore import LocalChunkStore
from mllib.errors import MllibError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mllib.datasets")
    steps = parser.add_subparsers(dest="step", required=True)
    for name in ("missing", "receive", "materialize"):
        step = steps.add_parser(name)
        step.add_argument("--store", required=True, help="the chunk store folder")
        if name == "materialize":
            step.add_argument("--cache", required=True, help="where versions are materialised")
            step.add_argument("sha256", help="the version's manifest digest")
    args = parser.parse_args(argv)
    store = LocalChunkStore(Path(args.store))
    try:
        if args.step == "missing":
            wanted = sys.stdin.read().split()
            sys.stdout.write("".join(f"{d}\n" for d in store.missing(wanted)))
        elif args.step == "receive":
            from mllib.datasets.transfer import read_frames

            chunks, nbytes = read_frames(sys.stdin.buffer, store)
            print(json.dumps({"chunks": chunks, "bytes": nbytes}))
        else:
            from mllib.datasets.materialize import data_path, load_manifest, materialize

            manifest = load_manifest(store, args.sha256)
            cache = Path(args.cache)
            root = materialize(store, args.sha256, cache)
            entry = manifest.files[0].path if manifest.files else None
            path = data_path(cache, args.sha256, manifest.kind, entry)
            print(json.dumps({"root": str(root), "path": str(path)}))
    except (MllibError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
