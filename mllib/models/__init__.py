"""The model registry as a user sees it: `mllib models list|show|alias`.

A model's versions (each made by a successful training run), their runs, their evaluations, the
aliases that name them and where each is deployed: `catalog`; setting and removing aliases:
`aliases`. Which version a command uses (`NAME:3`, `NAME@champion`, `--best METRIC`) is decided
lower down, in mllib.runs.model_choice, since runs (evaluate, predict) use it too.
"""
