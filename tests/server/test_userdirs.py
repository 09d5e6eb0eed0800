"""Where a user's own files go, as the real `mllib` puts them: the login credential in the config
folder (XDG on Linux), everything under MLLIB_HOME when it is set, an old ~/.mllib credential
moved once and never lost, an old server home kept in use. HOME is a temporary folder in every
test, so the machine's own folders are never touched."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.conftest import Mounts, Project
from tests.server.conftest import TeamServer, make_server

USER_DIR_VARIABLES = ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A running server (SQLite) with user dee."""
    server = make_server(tmp_path_factory.mktemp("userdirs"), "sqlite")
    server.add_user("dee")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home folder of this test's own, no MLLIB_HOME and no XDG variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MLLIB_HOME")
    for name in USER_DIR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return home


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _login(project: Project, server: TeamServer) -> None:
    result = project.mllib("login", server.url, input=server.tokens["dee"] + "\n")
    assert result.returncode == 0, result.output
    assert server.tokens["dee"] not in result.output


def _whoami(project: Project, server: TeamServer) -> str:
    result = project.mllib("whoami")
    assert result.stdout.strip() == f"dee on {server.url}", result.output
    return result.stderr


def _private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_login_goes_to_the_config_folder_of_the_platform(
    model_project: Project, server: TeamServer, home: Path, tmp_path: Path, monkeypatch
) -> None:
    _login(model_project, server)
    credential = home / ".config" / "mllib" / "credentials.json"
    assert _private(credential) and stat.S_IMODE(credential.parent.stat().st_mode) == 0o700
    assert not (home / ".mllib").exists()
    _whoami(model_project, server)

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    assert "No team server is configured" in model_project.mllib("whoami").stderr  # not read there
    _login(model_project, server)
    assert _private(tmp_path / "xdg-config" / "mllib" / "credentials.json")
    _whoami(model_project, server)


def test_mllib_home_holds_every_per_user_file(
    model_project: Project, server: TeamServer, home: Path, tmp_path: Path, monkeypatch
) -> None:
    mllib_home = tmp_path / "mllib-home"
    monkeypatch.setenv("MLLIB_HOME", str(mllib_home))
    for name in USER_DIR_VARIABLES:  # MLLIB_HOME wins over the platform's folders
        monkeypatch.setenv(name, str(tmp_path / "xdg" / name))

    _login(model_project, server)
    _whoami(model_project, server)
    init = model_project.mllib("server", "init", "--port", "8799")  # a team server's default home
    assert init.returncode == 0, init.output

    assert _private(mllib_home / "config" / "credentials.json")
    assert (mllib_home / "data" / "server" / "server.json").is_file()
    assert _files(home) == [] and not (tmp_path / "xdg").exists()


@pytest.mark.parametrize("layout", ["~/.mllib", "MLLIB_HOME"])
def test_a_credential_of_the_old_layout_still_logs_in_and_is_moved_once(
    model_project: Project, server: TeamServer, home: Path, monkeypatch, layout: str
) -> None:
    old_home, new_folder = home / ".mllib", home / ".config" / "mllib"
    if layout == "MLLIB_HOME":  # it held the files itself: $MLLIB_HOME/credentials.json
        old_home, new_folder = home / "mh", home / "mh" / "config"
        monkeypatch.setenv("MLLIB_HOME", str(old_home))
    old_home.mkdir(mode=0o700)
    old = old_home / "credentials.json"
    text = json.dumps({"tokens": {server.url: server.tokens["dee"]}, "current": server.url})
    old.write_text(text)
    old.chmod(0o644)  # as a copy made by hand may be: the moved one is 0600

    first = _whoami(model_project, server)
    new = new_folder / "credentials.json"
    assert first.strip() == (
        f"mllib: moved {old} to {new} (mllib's own files follow the platform's folders now)"
    )
    assert new.read_text() == text and _private(new) and not old.exists()
    assert _whoami(model_project, server) == ""  # moved once: no note again


def test_an_old_credential_on_another_filesystem_is_copied_whole_then_removed(
    model_project: Project, server: TeamServer, home: Path, mounts: Mounts
) -> None:
    mounts.tmpfs(home / ".mllib")  # no hard link from there to ~/.config: a synced copy
    old = home / ".mllib" / "credentials.json"
    text = json.dumps({"tokens": {server.url: server.tokens["dee"]}, "current": server.url})
    old.write_text(text)

    assert "mllib: moved" in _whoami(model_project, server)
    new = home / ".config" / "mllib" / "credentials.json"
    assert new.read_text() == text and _private(new) and not old.exists()
    assert _files(home / ".config") == ["mllib/credentials.json"]  # no temporary file left
    _whoami(model_project, server)


def test_an_old_credential_that_cannot_be_moved_is_used_where_it_is(
    model_project: Project, server: TeamServer, home: Path
) -> None:
    (home / ".config").write_text("a file where the config folder would be\n")
    (home / ".mllib").mkdir(mode=0o700)
    old = home / ".mllib" / "credentials.json"
    old.write_text(
        json.dumps({"tokens": {server.url: server.tokens["dee"]}, "current": server.url})
    )

    assert _whoami(model_project, server) == ""
    assert old.is_file()  # never lost


def test_an_old_server_home_stays_in_use(project: Project, home: Path) -> None:
    old = home / ".mllib" / "server"
    made = project.mllib("server", "init", "--dir", str(old), "--port", "8798")
    assert made.returncode == 0, made.output

    added = project.mllib("server", "users", "add", "eve")  # no --dir: the default home
    assert added.returncode == 0, added.output
    listed = project.mllib("server", "users", "list", "--dir", str(old), "--json")
    assert "eve" in [user["name"] for user in listed.json()]
    assert not (home / ".local").exists()
