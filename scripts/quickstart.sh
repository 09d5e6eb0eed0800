#!/usr/bin/env bash
# Quick start: set up mllib, then take a template model through its whole life on this machine:
# init, train, evaluate, compare, predict. Safe to run again.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
ensure_python_env "sklearn"
export PATH="$VENV/bin:$PATH"

DEMO="${1:-$MLLIB_ROOT/mllib-demo}"
rm -rf "$DEMO"
say "mllib init $DEMO"
mllib init "$DEMO"
cd "$DEMO"

say "Train with the defaults, then evaluate"
mllib train model.py
mllib evaluate model.py

say "Train and evaluate in one run with another learning rate (the original spelling)"
mllib model.py --train --evaluate --learning_rate=0.2

first=$(mllib runs list --json --status succeeded --limit 3 | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r[-1]["id"], r[0]["id"])')
say "Compare the two training runs"
mllib runs compare $first

say "Predict with the newest model"
mllib predict model.py --learning_rate=0.2 --input '{"x": [0.5, 1.0]}'

say "All runs"
mllib runs list
