"""`mllib data import label-studio EXPORT.json --name NAME`: a Label Studio JSON export as a
dataset version that a model's evaluate() reads.

Label Studio's JSON export is a list of tasks, each with its `data` (the text, the image URL...)
and `annotations`, each holding a `result` list of regions: `{"from_name": control, "type":
"choices" | "labels" | "textarea" | ..., "value": {...}}`. The version holds two files:

    examples.jsonl   one line per annotated task: {"id", "data", "annotations": {control: value}}
    export.json      the export as it was, for whatever the lines leave out

A task's annotation is its newest one that was not cancelled. Values read as Label Studio's
JSON-MIN export gives them: `choices` and `textarea` a string when there is one value, else a
list; `labels` (spans) a list of {start, end, text, labels}; `rating`, `number` the number; any
other control its `value` objects, as a list.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mllib.datasets.api import UploadResult, upload
from mllib.datasets.progress import Progress
from mllib.datasets.refs import check_name
from mllib.errors import NotFoundError, UsageError
from mllib.workspace import Workspace

EXAMPLES_FILE = "examples.jsonl"
EXPORT_FILE = "export.json"
_SCALAR = {"rating": "rating", "number": "number"}
_ONE_OR_MANY = {"choices": "choices", "textarea": "text"}


@dataclass(frozen=True)
class ImportResult:
    upload: UploadResult
    examples: int  # annotated tasks written to examples.jsonl
    skipped: int  # tasks with no annotation that was not cancelled


def import_export(
    path: Path, name: str, *, ws: Workspace | None = None, progress: Progress | None = None
) -> ImportResult:
    """Read a Label Studio JSON export at `path` and upload it as a new version of `name`."""
    check_name(name)
    tasks = read_export(path)
    examples = [example for task in tasks if (example := to_example(task)) is not None]
    if not examples:
        raise UsageError(
            f"{path} holds {len(tasks)} task(s) and none has an annotation that was not cancelled",
            hint="Annotate some tasks in Label Studio, then export them again (JSON).",
        )
    with tempfile.TemporaryDirectory(prefix="mllib-label-studio-") as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        with (folder / EXAMPLES_FILE).open("w", encoding="utf-8") as out:
            for example in examples:
                out.write(json.dumps(example, ensure_ascii=False, sort_keys=True) + "\n")
        (folder / EXPORT_FILE).write_bytes(path.read_bytes())
        result = upload(folder, name, ws=ws, progress=progress)
    return ImportResult(result, len(examples), len(tasks) - len(examples))


def read_export(path: Path) -> list[dict[str, Any]]:
    """The export's tasks; anything else is a usage error saying what was expected."""
    expected = "Label Studio's JSON export: a list of tasks, each with `data` and `annotations`"
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON ({exc})", hint=f"Give {expected}.") from None
    if not isinstance(tasks, list):
        raise UsageError(f"{path} is not a list of tasks", hint=f"Give {expected}.")
    for index, task in enumerate(tasks):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise UsageError(f"{path}: task {index} has no `data` object", hint=f"Give {expected}.")
        if not isinstance(task.get("annotations", []), list):
            raise UsageError(f"{path}: task {index}'s `annotations` is not a list")
    return tasks


def to_example(task: dict[str, Any]) -> dict[str, Any] | None:
    """The task as one line of examples.jsonl, or None when it has no usable annotation."""
    annotations = [
        a
        for a in task.get("annotations") or []
        if isinstance(a, dict) and not a.get("was_cancelled") and isinstance(a.get("result"), list)
    ]
    if not annotations:
        return None
    newest = max(
        annotations,
        key=lambda a: (a.get("updated_at") or a.get("created_at") or "", a.get("id") or 0),
    )
    return {"id": task.get("id"), "data": task["data"], "annotations": controls(newest["result"])}


def controls(result: list[dict[str, Any]]) -> dict[str, Any]:
    """{control name: value} of one annotation's result regions."""
    values: dict[str, list[Any]] = {}
    kinds: dict[str, str] = {}
    for region in result:
        if not isinstance(region, dict) or not isinstance(region.get("value"), dict):
            continue
        control = str(region.get("from_name") or region.get("type") or "value")
        kind = str(region.get("type") or "")
        kinds[control] = kind
        value = region["value"]
        found = values.setdefault(control, [])
        if kind in _ONE_OR_MANY:
            items = value.get(_ONE_OR_MANY[kind], [])
            found.extend(items if isinstance(items, list) else [items])
        elif kind in _SCALAR:
            found.append(value.get(_SCALAR[kind]))
        elif kind == "labels":
            found.append({k: value[k] for k in ("start", "end", "text", "labels") if k in value})
        else:
            found.append(value)
    out: dict[str, Any] = {}
    for control, found in values.items():
        kind = kinds[control]
        if kind in _ONE_OR_MANY or kind in _SCALAR:
            out[control] = found[0] if len(found) == 1 else found
        else:
            out[control] = found
    return out
