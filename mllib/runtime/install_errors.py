"""Whose fault an installer's failure is, said in one line: a requirement that cannot be met is
the user's (and names the line it came from), an index that cannot be reached is the system's.

Image builds (pip inside the build) and venv builds (uv or pip here or on an agent) both read
their installer's last words through here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mllib.runtime.env_plan import EnvPlan
    from mllib.runtime.installer import InstallFailed

# Output that means the package index (not the requirement) failed: a system error.
NETWORK_TROUBLE = (
    "CERTIFICATE_VERIFY_FAILED",
    "Temporary failure in name resolution",
    "Max retries exceeded",
    "Connection refused",
    "Could not fetch URL",
    "ReadTimeoutError",
    "ProxyError",
    # uv's words for the same
    "error sending request",
    "dns error",
    "failed to lookup address",
    "tcp connect error",
    "operation timed out",
    "invalid peer certificate",
    "Network is unreachable",
)


def network_trouble(lines: Sequence[str]) -> bool:
    """Whether an installer's output says the index could not be reached."""
    return any(marker.lower() in line.lower() for line in lines for marker in NETWORK_TROUBLE)


def classify_install_failure(exc: InstallFailed, plan: EnvPlan) -> tuple[str, str]:
    """(failure class, one-line message) for a venv build that failed: an index that could not
    be reached is a system error (worth retrying), anything else the requirement's fault."""
    from mllib.protocol.failure import SYSTEM_ERROR, USER_ERROR

    if network_trouble(exc.lines):
        last = exc.lines[-1] if exc.lines else str(exc)
        message = f"the package index could not be reached while building the venv: {last}"
        return SYSTEM_ERROR, message
    installer = "uv" if os.path.basename(exc.command[0]) == "uv" else "pip"
    message, hint = explain_install_failure(installer, exc.lines, plan)
    return USER_ERROR, f"{message}. {hint}"


def explain_install_failure(
    installer: str, error_lines: Sequence[str], plan: EnvPlan
) -> tuple[str, str]:
    """(message, hint) for a requirement `installer` could not install, naming the lines of
    the plan's requirements its error mentions."""
    lines = [line.strip() for line in error_lines if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith(("ERROR:", "error:"))]
    said_lines = lines[starts[-1] :] if starts else lines[-6:]
    text = _reason(said_lines) if said_lines else "it failed"
    said = " ".join(said_lines).lower().replace("_", "-").replace("`", "")
    culprits = [r for r in plan.requirements if _mentions(said, r)]
    where = "; ".join(f"{r.origin}: {r.text}" for r in culprits[:3])
    message = f"{installer} could not install the project's dependencies: {text}"
    if where:
        message += f" (at {where})"
    hint = (
        "Fix the requirement (requirements.txt, pyproject.toml or [runtime] packages in "
        "mllib.toml)."
    )
    return message, hint


def _reason(lines: list[str]) -> str:
    """The installer's error line and the causes under it (uv: `cause:` and `╰─▶` lines)."""
    parts = [lines[0].removeprefix("ERROR: ").removeprefix("error: ")]
    for line in lines[1:]:
        for marker in ("cause:", "╰─▶", "Caused by:"):
            if line.startswith(marker):
                parts.append(line.removeprefix(marker).strip())
    return ": ".join(part.rstrip(":") for part in parts if part)


def _mentions(text: str, req: object) -> bool:
    from mllib.runtime.requirements import Requirement

    assert isinstance(req, Requirement)
    if req.is_option:
        return req.text.split()[-1].lower() in text
    return req.name in text


def python_mismatch(have: str, wanted: str, *, where: str) -> str | None:
    """A clear note when `where` has Python `have` but the run was submitted from `wanted`
    (another minor version: a pickled model may not load, pins may not exist); else None."""
    if not have or not wanted:
        return None
    if have.split(".")[:2] == wanted.split(".")[:2]:
        return None
    return (
        f"{where} has Python {have}, not {'.'.join(wanted.split('.')[:2])} as the machine the run "
        "came from: pinned versions may not exist for it, results can differ, and a model "
        "pickled under one minor version may not load under the other"
    )
