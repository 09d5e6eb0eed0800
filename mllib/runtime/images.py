"""The image a project's runs use: built by mllib from its dependencies, named by their content.

Two images, each tagged by a hash of what went into it, so an unchanged project builds nothing:

- ``{repository}-deps:HASH`` FROM ``[runtime] base_image``: a venv at /opt/venv with the
  run's environment plan (mllib.runtime.env_plan: the project's requirements as pip reads them,
  hashes and constraints kept in force, and the worker's, every package pinned to the version
  installed on the submitting machine), the host's CA bundle trusted and its pip index settings
  used. HASH covers the base image id, the installer's files and the CAs. Where the base's
  Python is another minor version than the submitting machine's and this host has a
  self-contained one of that version, the venv is made with it, in an image derived from the
  base with it copied in (mllib.runtime.image_python); else the build says so.
- ``{repository}:HASH`` FROM the deps image: the running mllib installed as a wheel. HASH
  covers the deps image and mllib's source, so editing mllib rebuilds only this small layer.

>>> tag = ensure_image(client, project.root, project.config, progress=print)  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mllib.config import Config
from mllib.errors import ConfigError, NotFoundError
from mllib.protocol.failure import SYSTEM_ERROR, USER_ERROR
from mllib.runtime.base_image import DEFAULT_TAG, base_build_problem, build_base_image
from mllib.runtime.engine import ImageBuildError, engine_host, image_id
from mllib.runtime.env_plan import EnvPlan, plan_environment
from mllib.runtime.host_settings import (
    local_pip_locations,
    pip_build_args,
    pip_build_settings,
)
from mllib.runtime.image_build import (
    VENV,
    BuildFailure,
    build_image,
    ca_files,
    explain_failure,
    host_lock,
    pip_dockerfile_lines,
    venv_env_line,
)
from mllib.runtime.image_python import ImagePython, choose_python, ensure_python_image
from mllib.runtime.install_errors import explain_install_failure
from mllib.runtime.wheels import local_wheels, mllib_source_hash, mllib_wheel, serve_wheels

if TYPE_CHECKING:
    from docker import DockerClient

# Bump when the Dockerfiles below change, so images built by an older recipe are not reused.
RECIPE = "2"
_CONTEXT = "/tmp/mllib-build"
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*$")

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ImagePlan:
    """What a project's image holds and the tags it goes by; computing it builds nothing."""

    base: str
    base_id: str
    env: EnvPlan
    deps_tag: str
    tag: str
    python: ImagePython | None = None  # the submitter's minor version, copied from this host
    python_note: str | None = None  # why the image keeps the base's Python of another minor


def image_settings(config: Config) -> tuple[str, str]:
    """(base image, repository): `[runtime]` of mllib.toml; MLLIB_IMAGE_REPOSITORY wins."""
    base = config.runtime.base_image
    repository = os.environ.get("MLLIB_IMAGE_REPOSITORY") or config.runtime.image_repository
    if not _REPOSITORY.match(repository):
        raise ConfigError(
            f"{config.where}: [runtime] image_repository = {repository!r} is not a Docker "
            "repository name",
            hint='Use lowercase letters, digits and . _ - /, e.g. "myteam/my-model".',
        )
    return base, repository


def plan_image(
    client: DockerClient,
    root: Path,
    config: Config,
    *,
    code_dir: Path | None = None,
    progress: Progress | None = None,
    env: EnvPlan | None = None,
) -> ImagePlan:
    """The image plan for the project at `root`, building the default base image if it is missing.

    `env`: the run's environment plan (made when the run was prepared); without one it is made
    now from `code_dir` (default: `root`), the code the run executes.
    """
    base, repository = image_settings(config)
    base_id = image_id(client, base) or _missing_base(base, progress)
    env = env or plan_environment(root, config, code_dir=code_dir)
    base_python = (client.images.get(base_id).labels or {}).get("org.mllib.python", "")
    python, note = choose_python(base, base_id, base_python, env.python, repository)
    # The CA bundle from PIP_CERT and friends, without the ~0.3 s `pip config list` a build runs.
    ca_bundle = pip_build_settings(config_list="").get("ca_bundle")
    ca_hash = hashlib.sha256(Path(ca_bundle).read_bytes()).hexdigest() if ca_bundle else None
    deps_hash = _digest(
        recipe=RECIPE,
        base=base_id,
        files=env.files(),
        ca=ca_hash,
        **({"python": python.tag} if python else {}),
    )
    final_hash = _digest(recipe=RECIPE, deps=deps_hash, mllib=mllib_source_hash())
    return ImagePlan(
        base=base,
        base_id=base_id,
        env=env,
        deps_tag=f"{repository}-deps:{deps_hash[:16]}",
        tag=f"{repository}:{final_hash[:16]}",
        python=python,
        python_note=note,
    )


def ensure_image(
    client: DockerClient,
    root: Path,
    config: Config,
    *,
    code_dir: Path | None = None,
    progress: Progress | None = None,
    cancel: threading.Event | None = None,
    env: EnvPlan | None = None,
) -> str:
    """The tag of the project's image (for the run's environment plan `env`), built first
    when it does not exist yet."""
    say = progress or (lambda _line: None)
    plan = plan_image(client, root, config, code_dir=code_dir, progress=say, env=env)
    if image_id(client, plan.tag):
        return plan.tag
    start = time.monotonic()
    with host_lock("mllib-image-" + plan.tag.rsplit(":", 1)[1]):
        if image_id(client, plan.tag):  # a concurrent run built it while we waited
            return plan.tag
        if not image_id(client, plan.deps_tag):
            _build_deps(client, plan, say, cancel)
        _build_final(client, plan, say, cancel)
    say(f"mllib: image {plan.tag} is ready ({time.monotonic() - start:.1f} s)")
    return plan.tag


def _build_deps(
    client: DockerClient, plan: ImagePlan, say: Progress, cancel: threading.Event | None
) -> None:
    names = ", ".join(plan.env.names()) or "none"
    say(
        f"mllib: building {plan.deps_tag} FROM {plan.base} with {names} "
        "(pinned to this machine's versions; once per set of dependencies)"
    )
    if plan.python_note:
        say(f"mllib: note: {plan.python_note}")
    if plan.python:
        ensure_python_image(client, plan.base, plan.python, say)
    settings = pip_build_settings()
    certs = ca_files(settings.get("ca_bundle"))
    wheels = local_wheels(plan.env.pins, *local_pip_locations()) if _engine_is_local() else []
    env_files = plan.env.files()
    installs = [
        f"{VENV}/bin/pip install --no-cache-dir --no-input --disable-pip-version-check"
        + (" --require-hashes" if step.require_hashes else "")
        + f" -r {_CONTEXT}/{step.requirements}"
        + (f" -c {_CONTEXT}/{step.constraints}" if step.constraints else "")
        for step in plan.env.install_steps()
    ]
    python = plan.python.executable if plan.python else "python3"
    dockerfile = [
        f"FROM {plan.python.tag if plan.python else plan.base}",
        *pip_dockerfile_lines(with_ca=bool(certs)),
        f"COPY {' '.join(sorted(env_files))} {_CONTEXT}/",
        f"RUN {python} -m venv {VENV} && {' && '.join(installs)} && rm -rf {_CONTEXT}",
        venv_env_line(),
    ]
    files = {
        **certs,
        **{name: text.encode() for name, text in env_files.items()},
        "Dockerfile": ("\n".join(dockerfile) + "\n").encode(),
    }
    buildargs = pip_build_args(settings)
    with serve_wheels(wheels) as url:
        if url:
            say(f"mllib: lending {len(wheels)} wheel(s) only this machine has to the build")
            buildargs["PIP_FIND_LINKS"] = " ".join(
                filter(None, (buildargs.get("PIP_FIND_LINKS"), url))
            )
        build_image(
            client,
            plan.deps_tag,
            files,
            buildargs=buildargs,
            labels={"org.mllib.image": "deps", "org.mllib.base": plan.base},
            network_mode="host" if url else None,  # the wheels are served on the host's loopback
            progress=say,
            explain=_explainer(plan),
            cancel=cancel,
        )


def _build_final(
    client: DockerClient, plan: ImagePlan, say: Progress, cancel: threading.Event | None
) -> None:
    say(f"mllib: building {plan.tag}: installing this mllib into {plan.deps_tag}")
    with tempfile.TemporaryDirectory(prefix="mllib-wheel-") as folder:
        wheel = mllib_wheel(Path(folder))
        dockerfile = [
            f"FROM {plan.deps_tag}",
            f"COPY {wheel.name} {_CONTEXT}/",
            f"RUN {VENV}/bin/pip install --no-cache-dir --no-input --disable-pip-version-check"
            f" --no-deps {_CONTEXT}/{wheel.name} && rm -rf {_CONTEXT}",
        ]
        files = {
            wheel.name: wheel.read_bytes(),
            "Dockerfile": ("\n".join(dockerfile) + "\n").encode(),
        }
    build_image(
        client,
        plan.tag,
        files,
        labels={"org.mllib.image": "run", "org.mllib.deps": plan.deps_tag},
        progress=say,
        cancel=cancel,
    )


def _explainer(plan: ImagePlan) -> Callable[[BuildFailure], tuple[str, str, str]]:
    """Blame the user for a requirement pip cannot install, and name where it was written."""

    def explain(failure: BuildFailure) -> tuple[str, str, str]:
        if f"{_CONTEXT}/" not in failure.step or failure.network_trouble:
            return explain_failure(failure)
        message, hint = explain_install_failure("pip", failure.error_lines, plan.env)
        return message, hint + " Or use --runtime process to run without an image.", USER_ERROR

    return explain


def _missing_base(base: str, progress: Progress | None) -> str:
    """Build the default base image when it is missing and we can; otherwise say what to do."""
    problem = base_build_problem() if base == DEFAULT_TAG else None
    if base == DEFAULT_TAG and problem is None:
        if progress:
            progress(
                f"mllib: building the base image {base} from Debian packages (about a minute, once)"
            )
        return build_base_image(base, progress=progress)
    why = f": {problem}" if problem else ""
    raise ImageBuildError(
        f"the base image {base} is not in the Docker engine{why}",
        hint="Build it with `mllib runtime build-base` (as root), set [runtime] base_image in "
        "mllib.toml to an image you have, or use --runtime process.",
        failure_class=SYSTEM_ERROR,
    )


def _engine_is_local() -> bool:
    return engine_host().startswith("unix://")


def _digest(**parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def build_project_image(start: str | Path = ".", *, progress: Progress | None = None) -> str:
    """Build (or find) the image of the project at or above `start`; returns its tag."""
    from mllib.project import Project
    from mllib.runtime.engine import docker_client

    if not Path(start).exists():
        raise NotFoundError(
            f"No project folder {str(start)!r}", hint="Give the project's folder (or a file in it)."
        )
    project = Project.find(start)
    client = docker_client(timeout=600)
    try:
        return ensure_image(client, project.root, project.config, progress=progress)
    finally:
        client.close()
