"""Fork server for the crash-torture test.

It imports torch and segal once, then runs each requested CLI command in a forked child, so a
hundred kill-and-resume attempts cost a hundred runs of segal, not a hundred interpreter start-ups.
Protocol: one JSON job per stdin line, ``{"argv": [...], "crash": "POINT:N" | null, "kill_after": s | null}``;
one JSON result per stdout line, ``{"killed": bool, "code": int | null, "seconds": float}``.
``crash`` arms a named crash point (segal.crashpoints); ``kill_after`` SIGKILLs from outside after a delay.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import torch

import segal.human  # noqa: F401  (with segal.runs, the models and torchvision: seconds every child would repeat)
import segal.loop  # noqa: F401
import tests.tiny  # noqa: F401  (registers tiny-seg)
from segal.cli import main
from segal.crashpoints import ENV


def run_child(job: dict, log_path: str) -> None:
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.pop(ENV, None)
    if job.get("crash"):
        os.environ[ENV] = job["crash"]
    try:
        code = main(job["argv"])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - report, never hang the server
        import traceback

        traceback.print_exc()
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code or 0)


def serve(log_path: str) -> None:
    torch.set_num_threads(1)
    for line in sys.stdin:
        job = json.loads(line)
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:
            run_child(job, log_path)
        deadline = start + job["kill_after"] if job.get("kill_after") else None
        while True:
            done, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
            if done:
                break
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = None
            else:
                time.sleep(0.01)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        print(json.dumps({"killed": killed, "code": code, "seconds": round(time.monotonic() - start, 3)}), flush=True)


if __name__ == "__main__":
    serve(sys.argv[1])
