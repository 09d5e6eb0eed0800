"""Serving trained models: `mllib serve` (dev), deployments to staging and prod under deploy
rules, API keys with shared rate limits, metrics, logs and load tests. Built on LitServe.

Two halves, and what they share:
- control/: deployment management (deploy, rollback, stop, keys, rules, load tests, status),
  run from the CLI's process. It starts servers as processes and never imports server/ at
  module level.
- server/: the code that runs inside a server process (`python -m mllib.serving.server
  SPEC.json`): LitServe with mllib's gateway, inference and metrics. It never imports control/.
- Here, the contract both use and neither owns: spec (the ServerSpec a server is started with,
  the Servable it loads, its status.json), logs (the log line format), apikeys (the key format
  and hash), audit (the audit log both write to), clock, schema (the registry tables).
  These modules import neither half.

Importing this package is cheap; each module imports LitServe, prometheus_client or httpx only
where it needs them.
"""
