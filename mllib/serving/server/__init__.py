"""The code that runs inside a server process: LitServe with mllib's gateway in front.

main (run_server, `python -m mllib.serving.server SPEC.json`) builds, from the one ServerSpec:
the worker board (board: readiness in shared memory), the model's LitAPI (modelapi), the gateway
(gateway: keys via keycheck, rate limits via ratelimit, metrics, request logs via logwriter,
health) and where predictions are made (inference: inline or LitServe workers). Every use of
LitServe's and uvicorn's private APIs is in litserve_internals; wire and openapi are the smaller
parts. Nothing here imports mllib.serving.control; importing this package is cheap (its modules
import LitServe where they need it).
"""
