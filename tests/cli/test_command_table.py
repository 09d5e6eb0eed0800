"""The README's command tables and the CLI agree: every command and option of one is in the other.

The CLI side is read from the click command tree `mllib` runs (mllib.cli.app.command()), not from
help text. The README side is every table headed `| Command | What it does |`: the code spans of
its first column that start with `mllib`. A span names one or more commands
(`mllib agents list|check NAME|sync [NAME] [--json]`); the options it shows belong to each of them.
A group's span that names none of its commands (`mllib deploy MODEL --env E`) is about the hidden
command the group runs by default. `--help`/`-h`, which every command has, need not be listed.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest
import typer

from mllib.cli.app import command
from tests.conftest import ROOT

HELP = {"--help", "-h"}
OPTION = re.compile(r"^--?[a-z][a-z0-9-]*$")  # --PARAM=V and other placeholders are upper case
CommandPath = tuple[str, ...]


def cli_commands() -> dict[CommandPath, dict[str, frozenset[str]]]:
    """Every command a user runs (root, leaves, the hidden default of a group) -> its options,
    each as option name -> all its spellings."""
    found: dict[CommandPath, dict[str, frozenset[str]]] = {}

    def walk(cmd, path: CommandPath) -> None:
        subs = getattr(cmd, "commands", None)
        if subs is None or not path[1:]:  # a leaf, or the root with its own options
            ctx = typer.Context(cmd, info_name=path[-1], help_option_names=sorted(HELP))
            found[path] = {
                p.name: frozenset(p.opts + p.secondary_opts) - HELP
                for p in cmd.get_params(ctx)
                if p.param_type_name == "option" and not p.hidden and set(p.opts) - HELP
            }
        for name, sub in (subs or {}).items():
            walk(sub, (*path, name))

    walk(command(), ("mllib",))
    return found


def readme_spans() -> list[str]:
    spans = []
    in_table = False
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("| Command | What it does |"):
            in_table = True
        elif not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("|---"):
            first_cell = re.split(r"(?<!\\)\|", line)[1]
            spans += [s for s in re.findall(r"`([^`]+)`", first_cell) if s.startswith("mllib")]
    return spans


def documented(span: str) -> tuple[list[CommandPath], set[str]]:
    """The commands a README span names, and the options it shows."""
    tokens = [
        t.strip("[]().,")
        for t in re.split(r"[\s|]+", span.replace("\\|", "|"))[1:]
        if t.strip("[]().,")
    ]
    options = {t.split("=")[0] for t in tokens if OPTION.match(t.split("=")[0])}
    root = command()
    group, path, named = root, ("mllib",), []
    for word in (t for t in tokens if not t.startswith("-")):
        sub = getattr(group, "commands", {}).get(word)
        if sub is None or sub.hidden or (named and group is root):
            continue
        if getattr(sub, "commands", None) is not None and not named:
            group, path = sub, (*path, word)
        else:
            named.append((*path, word))
    if not named:  # the root's own options, or a group's default command
        hidden = [n for n, c in getattr(group, "commands", {}).items() if c.hidden]
        named = [(*path, n) for n in hidden] if group is not root else [path]
    return named, options


def test_the_readme_has_command_tables():
    assert len(readme_spans()) > 30


@pytest.mark.parametrize("span", readme_spans())
def test_every_command_and_option_in_the_readme_exists(span):
    cli = cli_commands()
    commands, options = documented(span)
    for path in commands:
        assert path in cli, f"README names `{' '.join(path)}`, which the CLI does not have"
        spellings = set().union(*cli[path].values()) if cli[path] else set()
        missing = sorted(options - spellings)
        assert not missing, f"`{' '.join(path)}` has no option {', '.join(missing)} ({span})"


def test_every_command_and_option_of_the_cli_is_in_the_readme():
    shown: dict[CommandPath, set[str]] = defaultdict(set)
    for span in readme_spans():
        commands, options = documented(span)
        for path in commands:
            shown[path] |= options
    problems = []
    for path, options in cli_commands().items():
        name = " ".join(path)
        if path not in shown:
            problems.append(f"`{name}` is not in the README's command tables")
            continue
        for spellings in options.values():
            if not spellings & shown[path]:
                problems.append(f"`{name}` option {'/'.join(sorted(spellings))} is not shown")
    assert not problems, "\n".join(problems)


def test_the_check_sees_a_missing_option_and_a_command_that_does_not_exist():
    assert documented("mllib runs list [--limit N] [--json]") == (
        [("mllib", "runs", "list")],
        {"--limit", "--json"},
    )
    commands, _ = documented("mllib agents list\\|check NAME\\|sync [NAME] [--json]")
    assert commands == [("mllib", "agents", n) for n in ("list", "check", "sync")]
    assert documented("mllib deploy MODEL --env staging\\|prod")[0] == [("mllib", "deploy", "ship")]
    assert documented("mllib -q COMMAND")[0] == [("mllib",)]
    cli = cli_commands()
    assert "--limit" in cli["mllib", "runs", "list"]["limit"]
    assert ("mllib", "runs", "nosuch") not in cli
