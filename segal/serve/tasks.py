"""``segal serve RUN --write-tasks DIR``: the Label Studio tasks for every image that needs a label.

``DIR/tasks.json`` holds one task per unlabeled pool image (``data.segal_id`` = its id, ``data.image``
its URL as the ``labelstudio`` export writes it: ``/data/local-files/?d=…`` when
``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT`` holds DIR), ``DIR/images/`` the images and
``DIR/labeling_config.xml`` the project's config.  No predictions: the backend adds them, with scores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from segal.fileio import atomic_write_bytes, atomic_write_json
from segal.interchange.base import ExportItem, image_name, write_images
from segal.interchange.labelstudio import CONFIG_FILE, MAIN_FILE, image_url, labeling_config
from segal.runs import open_run


def write_tasks(run_dir: Path, out: Path) -> tuple[Path, int]:
    """Write the tasks, images and config; returns (the tasks file, the number of tasks)."""
    run = open_run(run_dir)
    state = run.load_state()
    pool = run.pool
    out = Path(out)
    candidates = np.setdiff1d(np.arange(state.size), state.labeled_indices())
    tasks = []
    for index in candidates.tolist():
        item = ExportItem(id=pool.image_id(index), image=pool.load_image(index), image_path=pool.image_path(index),
                          prediction=np.empty((0, 0), np.uint8))
        images = write_images(out, [item])
        tasks.append({"data": {"image": image_url(images / image_name(item), out), "segal_id": item.id}})
    atomic_write_bytes(out / CONFIG_FILE, labeling_config(pool.classes))
    atomic_write_json(out / MAIN_FILE, tasks)
    return out / MAIN_FILE, len(tasks)
