"""The worker: the one entrypoint (`python -m mllib.worker`) every runtime executes to run model code."""
