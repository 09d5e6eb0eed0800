"""Hyperparameter studies: Optuna samples and prunes, mllib runs every trial as an ordinary run.

space (the `--param NAME=KIND:ARGS` strings), settings (`[tune]`), schema and records (studies
and their trials' runs in the registry), storage (Optuna's journal, sampler and pruner: the only
module that imports Optuna), driver (ask, run, prune, tell), views and plot (`tune show/list`),
api (the functions the CLI and notebooks call: `mllib.tune(...)`).
"""
