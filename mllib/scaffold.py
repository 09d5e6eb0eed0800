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
