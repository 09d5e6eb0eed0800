"""Serving trained models: `mllib serve` (dev), deployments to staging and prod under deploy
rules, API keys with shared rate limits, metrics, logs and load tests. Built on LitServe.

Importing this package is cheap; each module imports LitServe, prometheus_client or httpx only
where it needs them.
"""
