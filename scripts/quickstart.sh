#!/usr/bin/env bash
# Quick start: set up mllib, then take a template model through its whole life on this machine:
# init, train, evaluate, compare, predict, then deploy to staging, load-test, deploy to prod,
# predict there with an API key, and show the deployments. Safe to run again; the deployments
# are stopped at the end (and if anything fails), so nothing is left running.
set -euo pipefail
source "$(dirname "$0")/lib/common.sh"
ensure_python_env "sklearn"
export PATH="$VENV/bin:$PATH"

DEMO="${1:-$MLLIB_ROOT/mllib-demo}"
stop_deployments() {
  [ -d "$DEMO/.mllib" ] || return 0
  for env in prod staging; do
    (cd "$DEMO" && mllib deploy stop --env "$env" >/dev/null 2>&1) || true
  done
}
stop_deployments  # from an earlier run, before its project is replaced
trap stop_deployments EXIT
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

say "Predict with the newest version (a line on stderr says which), then with version 1"
mllib predict model.py --input '{"x": [0.5, 1.0]}'
mllib predict --model linear:1 --input '{"x": [0.5, 1.0]}'

say "Deploy the version with the lowest mse to staging, load-test it there, then deploy it to prod"
mllib deploy linear --best mse --env staging
mllib loadtest --env staging --duration 5
mllib deploy linear --best mse --env prod
mllib models show linear

say "Create an API key for prod and predict with it"
key=$(mllib keys create --env prod --name quickstart)
url=$(mllib deploy status --env prod --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["url"])')
python3 - "$url/predict" "$key" <<'PY'
import sys, urllib.request
request = urllib.request.Request(sys.argv[1], data=b'{"x": [0.5, 1.0]}', method="POST",
                                 headers={"Authorization": f"Bearer {sys.argv[2]}", "Content-Type": "application/json"})
print(urllib.request.urlopen(request).read().decode())
PY

say "Deployments, with live requests/s, latency and error rate"
mllib deploy status
mllib deploy history --limit 8

say "All runs"
mllib runs list

say "Stop the deployments"
mllib deploy stop --env prod
mllib deploy stop --env staging
