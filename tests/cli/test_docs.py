"""The README's command tables match the CLI (as sqlite-utils' tests/test_docs.py keeps its docs
honest): every command the CLI has is in a table row, every command and option a row names
exists and its `--help` shows it, and every option of every command is documented somewhere."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mllib.cli.app import app

README = Path(__file__).resolve().parents[2] / "README.md"
SPAN = re.compile(r"`(mllib [^`]+)`")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def _commands() -> dict[tuple[str, ...], Any]:
    """Every command of the CLI by its words (`("mllib", "runs", "list")`), groups included."""
    found = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found[path] = command
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ("mllib",))
    return found


COMMANDS = _commands()


def _options(command: Any) -> set[str]:
    """A command's long options, --help included (click adds it outside `params`)."""
    given = {o for p in command.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}
    return given | {"--help"}


def _default(group: Any) -> Any:
    """What `mllib GROUP ARGS...` runs when ARGS names no subcommand: its one hidden command
    (`mllib deploy MODEL` is `deploy ship`), else the group itself."""
    hidden = [c for c in getattr(group, "commands", {}).values() if c.hidden]
    return hidden[0] if len(hidden) == 1 else group


def _expand(path: tuple[str, ...], rest: str) -> list[tuple[tuple[str, ...], str]]:
    """The commands a row's span names (`agents list|check NAME|remove NAME` is three), each
    with the rest of its words."""
    command = COMMANDS[path]
    subcommands = getattr(command, "commands", {})
    if not subcommands:
        return [(path, rest)]
    pieces = [p.strip() for p in rest.split("|")]
    heads = [p.split(" ", 1)[0] for p in pieces]
    if len(pieces) > 1 and all(h in subcommands for h in heads):
        return [
            x for p, h in zip(pieces, heads, strict=True) for x in _expand((*path, h), p[len(h) :])
        ]
    head = rest.split(" ", 1)[0]
    if head in subcommands:
        return _expand((*path, head), rest[len(head) :].strip())
    default = _default(command)
    if rest.lstrip("[").startswith("-"):  # the group's own options (`mllib --version`)
        default = command
    return [(path if default is command else (*path, default.name), rest)]


def _documented() -> list[tuple[str, tuple[str, ...], set[str]]]:
    """(the row's span, a command it names, the options it gives that command)."""
    rows = []
    for line in README.read_text().splitlines():
        if not line.startswith("| `mllib"):
            continue
        first_cell = line.split(" | ")[0]
        for span in SPAN.findall(first_cell):
            text = span.replace("\\|", "|")
            for path, rest in _expand(("mllib",), text[len("mllib") :].strip()):
                rows.append((span, path, set(OPTION.findall(rest))))
    return rows


DOCUMENTED = _documented()


def test_the_tables_name_every_command_of_the_cli() -> None:
    named = {path for _, path, _ in DOCUMENTED}
    leaves = {
        path
        for path, command in COMMANDS.items()
        if not getattr(command, "commands", None) and not command.hidden
    }
    assert sorted(leaves - named) == []
    assert len(named) > 30  # the parser read the tables


@pytest.mark.parametrize("span, path, options", DOCUMENTED, ids=[d[0] for d in DOCUMENTED])
def test_each_row_names_a_command_and_options_its_help_shows(
    span: str, path: tuple[str, ...], options: set[str], tmp_path: Path, monkeypatch
) -> None:
    command = COMMANDS[path]
    assert options <= _options(command), f"{span}: {sorted(options - _options(command))}"
    if command.hidden or getattr(command, "commands", None):
        return  # a group's default command: its --help is the group's
    monkeypatch.chdir(tmp_path)  # the model commands read ./model.py for its params
    shown = CliRunner().invoke(app, [*path[1:], "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert shown.exit_code == 0, shown.output
    assert options <= set(OPTION.findall(shown.output)), shown.output


def test_every_option_is_documented() -> None:
    text = README.read_text()
    undocumented = sorted(
        f"{' '.join(path)} {option}"
        for path, command in COMMANDS.items()
        for option in _options(command) - {"--help"}
        if not re.search(rf"{re.escape(option)}(?![\w-])", text)
    )
    assert undocumented == []
