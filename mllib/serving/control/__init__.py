"""The control plane of serving: deployment management, run from the CLI's process (and its
Python API), never inside a server.

deploy (deploy, rollback, stop, reconcile; under the rules of policy), dev (`mllib serve`),
servable (what to serve, materialized, and the ServerSpec serving it), process (a server as a
background process group), records (deployments in the registry), keys (create, list, revoke),
loadtest, status (with scrape: a server's /metrics read from outside), settings ([serve],
[deploy], [keys], [loadtest]), ports and paths. Servers are started as processes
(`python -m mllib.serving.server SPEC.json`), so nothing here imports mllib.serving.server at
module level; `mllib serve` alone imports it, in its function, to serve in the foreground.
"""
