"""What users supply is printed as text, never as rich markup, with control characters escaped:
every command of the CLI (listed from its command tree, so a new command fails until it has a
scenario here) is run with markup and escape sequences in the model name, param values, metric
names, file names, paths, reasons and key names, and must neither break (rich's MarkupError was
a traceback on every `runs list`) nor let an escape sequence reach the terminal.

A run's own output (what the model prints, `mllib runs logs`) is passed through as the program
wrote it, like `docker logs`; the model here prints nothing, so every byte checked is mllib's.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.cli.commands import commands
from tests.conftest import Project, Result

ODD = "x[/x][bold]b\x1b[31mred\x07\u202eodd"  # markup, a colour, a bell, a bidi override
SHOWN = "\\x1b[31mred\\x07\\u202eodd"  # how mllib shows it
RAW = ("\x1b", "\x07", "\u202e")

MODEL = textwrap.dedent(
    f"""
    import os

    import mllib

    ODD = {ODD!r}


    class Odd:
        def __init__(self):
            self.tag = mllib.Param("plain")
            self.fail = mllib.Param(False)

        def train(self):
            if self.fail:
                raise ValueError("failed on " + ODD)
            mllib.log_metric(ODD, 0.5, step=0)
            with open(os.path.join(mllib.artifact_dir(), ODD.replace("/", "_") + ".txt"), "w") as f:
                f.write("artifact")

        def evaluate(self):
            return {{ODD: 0.9}}

        def predict(self, request):
            if request.get("fail"):
                raise ValueError("cannot predict " + ODD)
            return {{"y": 1}}
    """
)

CONFIG = """
name = NAME

[runtime]
local = "process"

[serve]
workers = 1
drain_s = 0.5

[deploy]
ready_timeout_s = 90
stop_grace_s = 15

[loadtest]
input = '{"x": 1}'
duration_s = 1
pass_min_requests = 1
pass_max_p99_ms = 60000
"""


@dataclass
class World:
    project: Project
    runs: list[str] = field(default_factory=list)
    state: dict[str, object] = field(default_factory=dict)

    def mllib(self, *args: str, **kw) -> Result:
        return self.project.mllib(*args, **kw)


def toml_string(text: str) -> str:
    """`text` as a TOML basic string (control characters as \\uXXXX)."""
    escaped = (c if c.isprintable() and c not in '"\\' else f"\\u{ord(c):04x}" for c in text)
    return '"' + "".join(escaped) + '"'


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A project in a folder whose name holds markup and escapes, with two trained runs (their
    params differ), one failed run, and a staging deployment made by the `deploy ship` scenario."""
    root = tmp_path_factory.mktemp("text") / f"proj-{ODD.replace('/', '_')}"
    root.mkdir()
    project = Project(root)
    project.write("model.py", MODEL)
    project.write("mllib.toml", CONFIG.replace("NAME", toml_string(ODD), 1))
    w = World(project)
    for args in (["--evaluate"], [f"--tag={ODD}"]):
        result = w.mllib("train", "model.py", *args)
        assert result.returncode == 0, result.output
    failed = w.mllib("train", "model.py", "--fail=true", "--detach")
    assert failed.returncode == 0, failed.output
    w.runs = [r["id"] for r in w.mllib("runs", "list", "--json").json()]
    yield w
    w.mllib("deploy", "stop", "--env", "staging")


def check(
    result: Result, *, codes: tuple[int, ...] = (0,), shows: bool = False, logs: bool = False
) -> None:
    """No escape sequence of the user's reached the terminal, no traceback (but in a server log,
    `logs`); `shows`: the user's text is there, escaped."""
    output = result.stdout + result.stderr
    assert result.returncode in codes, output
    assert "MarkupError" not in output and (logs or "Traceback" not in output), output
    for raw in RAW:
        assert raw not in output, f"{raw!r} printed raw:\n{output}"
    if shows:
        assert SHOWN in output, output


def train(w: World) -> None:
    check(w.mllib("train", "model.py", f"--tag={ODD}", "--evaluate"), shows=True)


def evaluate(w: World) -> None:
    check(w.mllib("evaluate", "model.py", "--run", w.runs[-1]), shows=True)


def predict(w: World) -> None:
    check(w.mllib("predict", "model.py", "--input", '{"x": 1}', "--run", w.runs[-1]))
    check(w.mllib("predict", "model.py", "--input", "{", "--run", ODD), codes=(2, 4))


def init(w: World) -> None:
    check(w.mllib("init", f"new-{ODD.replace('/', '_')}"), shows=True)


def serve(w: World) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mllib", "serve", "model.py", "--port", str(_free_port())],
        cwd=w.project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if "Ctrl-C stops it" in line or len(lines) > 200:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    check(Result(proc.returncode, out, "".join(lines) + err), codes=(0, 130), shows=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadtest(w: World) -> None:
    _deployed(w)
    check(w.mllib("loadtest", "--env", "staging", "--duration", "1"), codes=(0, 1), shows=True)


def doctor(w: World) -> None:
    check(w.mllib("doctor"), codes=(0, 1), shows=True)


def runs_list(w: World) -> None:
    check(w.mllib("runs", "list"), shows=True)


def runs_show(w: World) -> None:
    for run_id in w.runs:
        check(w.mllib("runs", "show", run_id), shows=True)


def runs_compare(w: World) -> None:
    check(w.mllib("runs", "compare", *w.runs[-2:]), shows=True)


def runs_logs(w: World) -> None:
    check(w.mllib("runs", "logs", w.runs[-1]))
    check(w.mllib("runs", "logs", ODD), codes=(4,), shows=True)


def runs_plot(w: World) -> None:
    check(w.mllib("runs", "plot", w.runs[-1], "--metric", ODD), shows=True)


def runs_cancel(w: World) -> None:
    check(w.mllib("runs", "cancel", w.runs[0]))
    check(w.mllib("runs", "cancel", ODD), codes=(4,), shows=True)


def runs_rm(w: World) -> None:
    check(w.mllib("runs", "rm", ODD), codes=(2, 4), shows=True)


def runs_rerun(w: World) -> None:
    check(w.mllib("runs", "rerun", w.runs[-1]), shows=True)


def runs_artifacts(w: World) -> None:
    out = w.project.root.parent / "exported"
    check(w.mllib("runs", "artifacts", w.runs[-1], "--output", str(out)), shows=True)


def tune_study(w: World) -> None:
    """A study whose metric is the odd name (announced, in its progress and in its outcome)."""
    check(
        w.mllib(
            "tune", "model.py", "--param", "tag=choice:a,b", "--metric", ODD, "--trials", "2",
            "--name", "odd", timeout=240,
        ),
        shows=True,
    )  # fmt: skip
    check(w.mllib("tune", "model.py", "--metric", ODD, "--name", ODD), codes=(2,), shows=True)


def tune_resume(w: World) -> None:
    check(w.mllib("tune", "resume", "odd", "--trials", "3", timeout=240), shows=True)
    check(w.mllib("tune", "resume", ODD), codes=(4,), shows=True)


def tune_show(w: World) -> None:
    check(w.mllib("tune", "show", "odd"), shows=True)


def tune_list(w: World) -> None:
    check(w.mllib("tune", "list"), shows=True)


def ray_check(w: World) -> None:
    """An address no cluster answers at (with Ray installed, the error names it, escaped; without
    it, the error says to install Ray): exit 3 either way, nothing raw on the terminal."""
    result = w.mllib("ray", "check", "--address", f"http://127.0.0.1:9/{ODD}", timeout=120)
    check(result, codes=(3,), shows="needs Ray" not in result.stderr)


def _home(w: World) -> str:
    """The team server's home, in the odd project folder (its path is user text)."""
    return str(w.project.root / "srv")


def server_init(w: World) -> None:
    check(w.mllib("server", "init", "--dir", _home(w)), shows=True)


def server_start(w: World) -> None:
    check(
        w.mllib("server", "start", "--dir", _home(w), "--host", ODD, timeout=60),
        codes=(1, 2, 3),
        shows=True,
    )


def server_users_add(w: World) -> None:
    check(w.mllib("server", "users", "add", "alice", "--dir", _home(w)))
    check(w.mllib("server", "users", "add", ODD, "--dir", _home(w)), codes=(2,), shows=True)


def server_users_token(w: World) -> None:
    check(w.mllib("server", "users", "token", "alice", "--dir", _home(w)))
    check(w.mllib("server", "users", "token", ODD, "--dir", _home(w)), codes=(2, 4), shows=True)


def server_users_list(w: World) -> None:
    check(w.mllib("server", "users", "list", "--dir", _home(w)))


def server_users_disable(w: World) -> None:
    check(w.mllib("server", "users", "disable", ODD, "--dir", _home(w)), codes=(2, 4), shows=True)


def server_agents(w: World) -> None:
    """`mllib server agents ...` are `mllib agents ...` on the server's list."""
    home = ("server", "agents", "--dir", _home(w))
    check(w.mllib(*home, "add", ODD, "--host", "h"), codes=(2,), shows=True)
    check(w.mllib(*home, "list"))
    check(w.mllib(*home, "check", ODD), codes=(2, 4), shows=True)
    check(w.mllib(*home, "remove", ODD), codes=(2, 4), shows=True)


def login(w: World) -> None:
    """No server answers there: an error naming the address, escaped; nothing stored."""
    result = w.mllib("login", f"http://127.0.0.1:9/{ODD}", input="token\n", timeout=60)
    check(result, codes=(1, 2, 3), shows=True)


def whoami(w: World) -> None:
    check(w.mllib("whoami"), codes=(1, 2, 3))


def logout(w: World) -> None:
    check(w.mllib("logout"), codes=(0, 1, 2, 3))


def queue(w: World) -> None:
    check(w.mllib("queue"), codes=(1, 2, 3))


def _schedule(w: World) -> str:
    """A scheduled evaluation of the odd model's version 1 (its id)."""
    if "schedule" not in w.state:
        result = w.mllib("evaluate", "--model", f"{ODD}:1", "--every", "1d")
        check(result, shows=True)
        w.state["schedule"] = result.stdout.strip().splitlines()[-1]
    return str(w.state["schedule"])


def schedules_add(w: World) -> None:
    """No team server here: a one-line usage error, the run id as given not echoed raw."""
    check(w.mllib("schedules", "add", ODD, "--every", "1d"), codes=(2,))


def schedules_list(w: World) -> None:
    _schedule(w)
    check(w.mllib("schedules", "list"), shows=True)


def schedules_show(w: World) -> None:
    check(w.mllib("schedules", "show", _schedule(w)), shows=True)
    check(w.mllib("schedules", "show", ODD), codes=(2, 4), shows=True)


def schedules_run_now(w: World) -> None:
    check(w.mllib("schedules", "run-now", _schedule(w), timeout=240), codes=(0, 1), shows=True)


def schedules_run_due(w: World) -> None:
    check(w.mllib("schedules", "run-due", timeout=240), codes=(0, 1))


def schedules_install(w: World) -> None:
    # the odd project folder: a control character in a crontab line or unit is refused
    check(w.mllib("schedules", "install", "--cron"), codes=(2,), shows=True)
    check(w.mllib("schedules", "install", "--dir", "units"), codes=(2,), shows=True)


def schedules_rm(w: World) -> None:
    check(w.mllib("schedules", "rm", _schedule(w)))
    check(w.mllib("schedules", "rm", ODD), codes=(2, 4), shows=True)


def monitoring_init(w: World) -> None:
    check(w.mllib("monitoring", "init", str(w.project.root / "mon")), shows=True)


def data_import_label_studio(w: World) -> None:
    import json

    task = {"data": {"text": ODD}, "annotations": [{"result": [{"from_name": ODD, "type": "choices", "value": {"choices": [ODD]}}]}]}  # fmt: skip
    export = w.project.root / f"{ODD.replace('/', '_')}.json"
    export.write_text(json.dumps([task]))
    check(w.mllib("data", "import", "label-studio", str(export), "--name", "ls"))
    check(
        w.mllib("data", "import", "label-studio", str(export), "--name", ODD),
        codes=(2,),
        shows=True,
    )


def _deployed(w: World) -> None:
    if not w.state.get("deployed"):
        result = w.mllib("deploy", w.runs[-1], "--env", "staging", timeout=240)
        check(result, shows=True)
        w.state["deployed"] = True


def deploy_ship(w: World) -> None:
    _deployed(w)


def deploy_status(w: World) -> None:
    _deployed(w)
    check(w.mllib("deploy", "status"), shows=True)
    check(w.mllib("deploy", "status", "--env", ODD), codes=(2,), shows=True)


def deploy_logs(w: World) -> None:
    _deployed(w)
    import httpx

    from tests.conftest import wait_for

    url = w.mllib("deploy", "status", "--json").json()[0]["url"]
    # predict() raises with the odd text: the server logs the error and its traceback
    assert httpx.post(f"{url}/predict", json={"fail": True}, timeout=30).status_code == 500
    logs = wait_for(
        lambda: (r := w.mllib("deploy", "logs", "--env", "staging")).stdout.count("cannot") and r,
        what="the error's log line",
    )
    check(logs, shows=True, logs=True)


def deploy_promote(w: World) -> None:
    """A canary of the other run beside the live one (its label, the odd model name, printed by
    `deploy` and by `deploy status`), promoted to every request at once."""
    _deployed(w)
    canary = w.mllib("deploy", w.runs[-2], "--env", "staging", "--canary", "50", timeout=240)
    check(canary, shows=True)
    check(w.mllib("deploy", "status", "--env", "staging"), shows=True)
    promoted = w.mllib(
        "deploy", "promote", "--env", "staging", "--steps", "100", "--interval", "0", timeout=240
    )
    check(promoted, shows=True)


def deploy_history(w: World) -> None:
    _deployed(w)
    forced = w.mllib(
        "deploy", w.runs[-2], "--env", "staging", "--force", "--reason", ODD, timeout=240
    )
    check(forced, codes=(0, 5), shows=True)
    check(w.mllib("deploy", "history"), shows=True)


def deploy_rollback(w: World) -> None:
    _deployed(w)
    check(
        w.mllib("deploy", "rollback", "--env", "staging", "--reason", ODD, timeout=240),
        codes=(0, 1),
    )
    check(w.mllib("deploy", "history"), shows=True)


def deploy_stop(w: World) -> None:
    _deployed(w)
    check(w.mllib("deploy", "stop", "--env", "staging", timeout=120), shows=True)
    w.state["deployed"] = False


def keys_create(w: World) -> None:
    check(w.mllib("keys", "create", "--env", "staging", "--name", ODD))


def keys_list(w: World) -> None:
    check(w.mllib("keys", "list"), shows=True)


def keys_revoke(w: World) -> None:
    key_id = w.mllib("keys", "list", "--json").json()[0]["id"]
    check(w.mllib("keys", "revoke", key_id))
    check(w.mllib("keys", "revoke", ODD), codes=(4,), shows=True)


def agents_add(w: World) -> None:
    check(w.mllib("agents", "add", ODD, "--host", "h"), codes=(2,), shows=True)
    check(w.mllib("agents", "add", "gpu1", "--host", ODD), codes=(2,), shows=True)


def agents_list(w: World) -> None:
    check(w.mllib("agents", "list"))


def agents_check(w: World) -> None:
    check(w.mllib("agents", "check", ODD), codes=(2, 4), shows=True)


def agents_remove(w: World) -> None:
    check(w.mllib("agents", "remove", ODD), codes=(2, 4), shows=True)


def agents_sync(w: World) -> None:
    check(w.mllib("agents", "sync"))


def agents_prune(w: World) -> None:
    check(w.mllib("agents", "prune", ODD), codes=(2, 4), shows=True)


def agents_forget_host_key(w: World) -> None:
    check(w.mllib("agents", "forget-host-key", ODD), codes=(0, 2, 4), shows=True)


def data_upload(w: World) -> None:
    folder = w.project.root / "files"
    folder.mkdir(exist_ok=True)
    (folder / f"{ODD.replace('/', '_')}.csv").write_text("a\n1\n")
    check(w.mllib("data", "upload", "files", "--name", "files"))
    check(w.mllib("data", "upload", "files", "--name", ODD), codes=(2,), shows=True)


def data_list(w: World) -> None:
    check(w.mllib("data", "list"), shows=True)  # the source: a path in the odd folder


def data_show(w: World) -> None:
    check(w.mllib("data", "show", "files"), shows=True)  # the odd file name


def data_rm(w: World) -> None:
    check(w.mllib("data", "rm", ODD), codes=(2,), shows=True)
    check(w.mllib("data", "rm", "files"))


def models_list(w: World) -> None:
    check(w.mllib("models", "list"), shows=True)


def models_show(w: World) -> None:
    check(w.mllib("models", "show", ODD), shows=True)
    check(w.mllib("models", "show", f"{ODD}:1"), shows=True)


def models_alias(w: World) -> None:
    check(w.mllib("models", "alias", f"{ODD}:1", "champion"), shows=True)
    check(w.mllib("models", "alias", f"{ODD}:1", ODD), codes=(2,), shows=True)
    check(w.mllib("models", "alias", "--rm", f"{ODD}@champion"), shows=True)


def dashboard(w: World) -> None:
    """The TUI itself shows user text as text (tests/dashboard: test_screens, test_runs_pane);
    here, what the command prints before it starts (a long value is cut short in the error)."""
    for args in (("dashboard", "--limit", ODD), ("dash", "--metric", "m", "--refresh", ODD)):
        result = w.mllib(*args)
        check(result, codes=(2,))
        assert "x[/x][bold" in result.stderr and "\\u202eodd" in result.stderr, result.stderr


def runtime_build_base(w: World) -> None:
    check(w.mllib("runtime", "build-base", "--tag", ODD), codes=(1, 2, 3), shows=True)


def runtime_build(w: World) -> None:
    check(w.mllib("runtime", "build", ODD), codes=(4,), shows=True)


# In the order they run: the deployment scenarios share one staging deployment.
SCENARIOS: dict[str, Callable[[World], None]] = {
    "train": train,
    "evaluate": evaluate,
    "predict": predict,
    "init": init,
    "doctor": doctor,
    "runs list": runs_list,
    "runs show": runs_show,
    "runs compare": runs_compare,
    "runs logs": runs_logs,
    "runs plot": runs_plot,
    "runs rerun": runs_rerun,
    "runs artifacts": runs_artifacts,
    "runs cancel": runs_cancel,
    "runs rm": runs_rm,
    "tune study": tune_study,
    "tune resume": tune_resume,
    "tune show": tune_show,
    "tune list": tune_list,
    "serve": serve,
    "deploy ship": deploy_ship,
    "deploy status": deploy_status,
    "deploy logs": deploy_logs,
    "loadtest": loadtest,
    "deploy promote": deploy_promote,
    "deploy history": deploy_history,
    "deploy rollback": deploy_rollback,
    "deploy stop": deploy_stop,
    "keys create": keys_create,
    "keys list": keys_list,
    "keys revoke": keys_revoke,
    "agents add": agents_add,
    "agents list": agents_list,
    "agents check": agents_check,
    "agents remove": agents_remove,
    "agents rm": agents_remove,
    "agents sync": agents_sync,
    "agents prune": agents_prune,
    "agents forget-host-key": agents_forget_host_key,
    "data upload": data_upload,
    "data list": data_list,
    "data show": data_show,
    "data rm": data_rm,
    "models list": models_list,
    "models show": models_show,
    "models alias": models_alias,
    "dashboard": dashboard,
    "dash": dashboard,
    "runtime build-base": runtime_build_base,
    "runtime build": runtime_build,
    "ray check": ray_check,
    "server init": server_init,
    "server users add": server_users_add,
    "server users token": server_users_token,
    "server users list": server_users_list,
    "server users disable": server_users_disable,
    "server agents add": server_agents,
    "server agents list": server_agents,
    "server agents check": server_agents,
    "server agents remove": server_agents,
    "server agents rm": server_agents,
    "server start": server_start,
    "login": login,
    "whoami": whoami,
    "logout": logout,
    "queue": queue,
    "schedules add": schedules_add,
    "schedules list": schedules_list,
    "schedules show": schedules_show,
    "schedules run-now": schedules_run_now,
    "schedules run-due": schedules_run_due,
    "schedules install": schedules_install,
    "schedules rm": schedules_rm,
    "monitoring init": monitoring_init,
    "data import label-studio": data_import_label_studio,
}


def test_every_command_has_a_scenario():
    assert sorted(path for path, _ in commands()) == sorted(SCENARIOS)


@pytest.mark.parametrize("path", list(SCENARIOS))
def test_user_text_is_shown_as_text(world: World, path: str):
    SCENARIOS[path](world)


def test_the_text_is_shown_with_its_escapes_in_place():
    """What a user sees: the markup as written, each control character as its escape."""
    from rich.console import Console

    from mllib import terminal
    from mllib.cli.output import table

    console = terminal._console_class()(record=True, markup=False, width=200, color_system=None)
    grid = table("NAME", whole=("NAME",))
    grid.add_row(ODD)
    console.print(grid)
    console.print(terminal.styled("[bold]model {}[/]", ODD))
    assert isinstance(console, Console)
    shown = console.export_text()
    assert shown.count("x[/x][bold]b" + SHOWN) == 2, shown
