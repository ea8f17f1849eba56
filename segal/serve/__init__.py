"""``segal serve RUN_DIR``: the run as a Label Studio ML backend, so active learning happens inside the tool.

Label Studio asks for predictions (brush pre-annotations from the run's current task network, each
with the run's acquisition score, so the task list can be ordered by it) and posts every annotation to
the webhook; segal imports it with ``segal import``'s checks, and after ``serve.retrain_every`` new
labels retrains and re-scores in the background.  Modules: :mod:`~segal.serve.protocol` (the JSON
shapes), :mod:`~segal.serve.backend` (the run side), :mod:`~segal.serve.scores` (scores for the whole
pool), :mod:`~segal.serve.app` (HTTP and the token), :mod:`~segal.serve.tasks` (the tasks to import).
Flask is imported only by :mod:`~segal.serve.app` (the optional ``serve`` extra).
"""

from __future__ import annotations

from segal.serve.backend import Backend, Snapshot
from segal.serve.tasks import write_tasks

__all__ = ["Backend", "Snapshot", "write_tasks"]
