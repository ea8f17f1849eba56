"""The JSON shapes of Label Studio's ML-backend protocol, with no HTTP and no run in them.

What Label Studio sends (``label_studio/ml/api_connector.py``, 1.23): ``/setup`` gets
``{"project": "<id>.<created>", "schema": <label config XML>, "hostname", "access_token", "extra_params"}``
and answers ``{"model_version"}``; ``/predict`` gets ``{"tasks": [task…], "project", "label_config", "params"}``
and must answer ``{"results": [one prediction per task, in order]}``, each ``{"result": [...], "score",
"model_version"}`` (a count that differs from the tasks' makes Label Studio retry one task at a time).
``/webhook`` gets the project webhook's ``{"action", "annotation", "task", "project"}``.  Label Studio
asks again only for tasks with no prediction of the version ``/setup`` reported, so the version names
the cycle whose network predicted.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import numpy as np

from segal.data.base import ClassSet
from segal.errors import UserError
from segal.interchange.brush_rle import mask_to_rle
from segal.interchange.labelstudio import FROM_NAME, TO_NAME

ANNOTATION_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
CONFIG_FIX = "use the labeling_config.xml that `segal serve RUN --write-tasks DIR` writes"


@dataclass(frozen=True)
class BrushTarget:
    """Where predictions go in a project's labeling config: the ``BrushLabels`` tag and its image."""

    from_name: str = FROM_NAME
    to_name: str = TO_NAME


def brush_target(label_config: object, classes: ClassSet, where: str = "label config") -> BrushTarget:
    """The project's ``BrushLabels`` tag; it must offer every class of the run (by name)."""
    if not isinstance(label_config, str) or not label_config.strip():
        return BrushTarget()  # no config sent: segal's own names
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as exc:
        raise UserError(f"the project's labeling config is not valid XML ({exc})", path=where, fix=CONFIG_FIX) from None
    brushes = [el for el in root.iter() if el.tag.lower() == "brushlabels"]
    if not brushes:
        raise UserError("the project's labeling config has no BrushLabels tag", path=where, fix=CONFIG_FIX)
    tag = brushes[0]
    offered = {el.get("value") for el in tag.iter() if el.tag.lower() == "label"}
    missing = [name for name in classes.names if name not in offered]
    if missing:
        raise UserError(f"the project's BrushLabels lack the run's classes {missing[:8]}", path=where, fix=CONFIG_FIX)
    return BrushTarget(tag.get("name") or FROM_NAME, tag.get("toName") or TO_NAME)


def brush_result(mask: np.ndarray, classes: ClassSet, target: BrushTarget, prefix: str) -> list[dict]:
    """One ``brushlabels`` region per class present in ``mask`` (ignore gets none), as the export writes."""
    h, w = mask.shape
    result = []
    for class_id in np.unique(mask).tolist():
        if class_id == classes.ignore_index:
            continue
        result.append({
            "id": f"{prefix}-{class_id}", "from_name": target.from_name, "to_name": target.to_name,
            "type": "brushlabels", "original_width": w, "original_height": h, "image_rotation": 0,
            "value": {"format": "rle", "rle": mask_to_rle(mask == class_id), "brushlabels": [classes.names[class_id]]},
        })
    return result


def tasks_of(payload: object) -> list[dict]:
    tasks = payload.get("tasks") if isinstance(payload, dict) else None
    if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
        raise UserError("a predict request needs {\"tasks\": [...]}", path="/predict",
                        fix="connect segal serve to the project as an ML backend; Label Studio sends the tasks")
    return tasks


def annotated_task(payload: object) -> dict:
    """The webhook's task with its annotation attached, as in Label Studio's JSON export."""
    if not isinstance(payload, dict) or not isinstance(payload.get("task"), dict) \
            or not isinstance(payload.get("annotation"), dict):
        raise UserError(f"a {payload.get('action') if isinstance(payload, dict) else ''} event without its task "
                        "and annotation", path="/webhook",
                        fix="turn on 'send payload' for the project's webhook to segal serve")
    return {**payload["task"], "annotations": [payload["annotation"]]}
