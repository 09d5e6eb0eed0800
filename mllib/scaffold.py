"""`mllib init`: copy a template project (model.py, mllib.toml, .env.local, data) into a folder."""

from __future__ import annotations

import shutil
from pathlib import Path

from mllib.errors import NotFoundError, UsageError


def templates_root() -> Path:
    """Templates ship inside the wheel as mllib/_templates, and sit in templates/ in a source checkout."""
    package = Path(__file__).parent  # the mllib package
    for candidate in (package / "_templates", package.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise NotFoundError(
        "mllib's templates are missing from this installation", hint="Reinstall mllib."
    )


def template_names() -> list[str]:
    return sorted(p.name for p in templates_root().iterdir() if (p / "model.py").is_file())


def init_project(dest: Path, template: str = "minimal", *, force: bool = False) -> list[Path]:
    """Write the template's files into `dest`; refuses to overwrite files unless `force`."""
    names = template_names()
    if template not in names:
        raise UsageError(f"No template {template!r}", hint=f"Choose one of: {', '.join(names)}.")
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file, not a folder", hint="Give a folder for the project.")
    source = templates_root() / template
    files = sorted(p for p in source.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    targets = [dest / p.relative_to(source) for p in files]
    clashes = [t for t in targets if t.exists()]
    if clashes and not force:
        shown = ", ".join(str(t) for t in clashes[:5])
        raise UsageError(
            f"{dest} already has {shown}", hint="Use another folder, or --force to overwrite."
        )
    for src, target in zip(files, targets, strict=True):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return targets


CI_PROVIDERS = {"github": Path(".github") / "workflows" / "mllib.yml"}
# The train step both CI jobs share: gates from FAIL_UNDER, and the run's id as a step output
# even when a gate fails (the comparison still shows the run).
TRAIN_SCRIPT = """\
gates=()
for gate in $FAIL_UNDER; do gates+=(--fail-under "$gate"); done
status=0
mllib train "$MODEL_FILE" --evaluate --local "${gates[@]}" || status=$?
run_id=$(mllib runs list --limit 1 --json | python -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')
echo "run_id=$run_id" >> "$GITHUB_OUTPUT"
exit "$status\""""


def init_ci(
    dest: Path, provider: str, *, fail_under: list[str] | None = None, force: bool = False
) -> Path:
    """Write the CI workflow of `provider` (github: .github/workflows/mllib.yml) into project
    folder `dest`; refuses to overwrite it unless `force`. `fail_under`: METRIC=NUMBER gates."""
    import re
    import sys

    from mllib._version import __version__
    from mllib.config import CONFIG_FILE, load_config

    if provider not in CI_PROVIDERS:
        raise UsageError(
            f"No CI provider {provider!r}", hint=f"Choose one of: {', '.join(CI_PROVIDERS)}."
        )
    for gate in fail_under or []:
        if not re.fullmatch(r"[\w.\-/]+=[-+0-9.eE]+", gate):
            raise UsageError(
                f"--fail-under {gate!r} is not METRIC=NUMBER", hint="For example: accuracy=0.9"
            )
    target = dest / CI_PROVIDERS[provider]
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="Use --force to write it again.")
    config = load_config(dest / CONFIG_FILE)
    model_file = (config.model or "model.py").partition(":")[0]
    values = {
        "mllib_version": __version__,
        "mllib_requirement": f"mllib=={__version__}",
        "model_file": model_file,
        "fail_under": " ".join(fail_under or []),
        "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
        "train_script": "\n".join(" " * 10 + line for line in TRAIN_SCRIPT.splitlines()),
    }
    text = (templates_root() / "ci" / f"{provider}.yml").read_text()
    for name, value in values.items():
        text = text.replace(f"<<{name}>>", value)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target
