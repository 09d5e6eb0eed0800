"""`python -m mllib.runs supervise --project ROOT RUN_ID`: a detached run's background supervisor."""

from __future__ import annotations

import argparse
import sys

from mllib.runs.control import supervise
from mllib.workspace import Workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mllib.runs")
    parser.add_argument("command", choices=["supervise"])
    parser.add_argument("--project", required=True)
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    record = supervise(Workspace.find(args.project), args.run_id)
    return 0 if record.status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
