"""Named crash points, so the crash-torture test can SIGKILL segal at exact, repeatable moments.

``SEGAL_CRASH_AT=train.step:3`` kills the process the 3rd time it reaches ``crash_point("train.step")``.
The points sit where a crash would hurt most: inside training and scoring loops, between writing a
temporary file and renaming it over the real one, and between the steps of an import.  Unset (always,
outside that test) a crash point costs one environment lookup.
"""

from __future__ import annotations

import os
import signal

ENV = "SEGAL_CRASH_AT"
POINTS = ("train.step", "vaal.step", "score.batch", "predict.batch", "write.before_rename", "write.after_rename",
          "import.move", "import.state", "regions.chunk")
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get(ENV)
    if not spec:
        return
    point, _, count = spec.rpartition(":")
    if point != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == int(count):
        os.kill(os.getpid(), signal.SIGKILL)
