"""The original spelling, `mllib model.py --train ...`, rewritten to `mllib train model.py ...`."""

from __future__ import annotations

from mllib.errors import UsageError

ACTION_FLAGS = {
    "--train": "train",
    "--evaluate": "evaluate",
    "--predict": "predict",
    "--serve": "serve",
    "--tune": "tune",
}


def looks_like_model(arg: str) -> bool:
    return arg.endswith(".py") or ".py:" in arg


# The root command's flags, which may come before either spelling: `mllib -q model.py --train`.
ROOT_FLAGS = {"-q", "--quiet", "-v", "--verbose"}


def rewrite(args: list[str], commands: set[str]) -> list[str]:
    """Turn `model.py --train [--evaluate] ...` into `train model.py [--evaluate] ...`; others unchanged."""
    lead = 0
    while lead < len(args) and args[lead] in ROOT_FLAGS:
        lead += 1
    return args[:lead] + _rewrite(args[lead:], commands)


def _rewrite(args: list[str], commands: set[str]) -> list[str]:
    if not args or args[0] in commands or not looks_like_model(args[0]):
        return args
    model, rest = args[0], args[1:]
    flags = [a for a in rest if a in ACTION_FLAGS]
    if "--train" in flags:
        command = "train"  # a further --evaluate means: train, then evaluate in the same run
    elif flags:
        command = ACTION_FLAGS[flags[0]]
    else:
        raise UsageError(
            f"Say what to do with {model}: --train, --evaluate, --predict, --serve or --tune",
            hint=f"For example: mllib {model} --train  (or: mllib train {model})",
        )
    rest = list(rest)
    rest.remove(f"--{command}")
    return [command, model, *rest]
