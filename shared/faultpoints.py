"""Named fault points: where the fault matrix (tests/e2e/test_fault_matrix.py) kills a process.

A service calls `reach("dispatcher.after_create_accepted")` at a step boundary. Nothing
happens unless the process was started with `REELFORGE_FAULT_DIR` and a test armed that point
by creating the file `<dir>/<name>`: the first process to reach it claims the file (an atomic
rename to `<name>.fired`, so exactly one process fires, once) and SIGKILLs itself there, as a
crash or an OOM kill would: no cleanup, no goodbye to the broker or the store. The test sees
the `.fired` file, restarts the process and counts what was lost.

Without `REELFORGE_FAULT_DIR` (every real deployment) `reach` is one dictionary lookup.

The points (where each sits and what a crash there risks):

- `intake.after_create`: job and its JobAccepted stored, before the HTTP answer.
- `dispatcher.after_create_accepted`: the provider accepted the create, its answer not yet
  recorded (the paid-but-unrecorded task).
- `poller.after_success`: TaskSucceeded stored with the attempt, before the offset commit.
- `outbox.after_publish`: the relay published a batch, before deleting it (published again).
- `storage.mid_upload`: the first chunk of a result went to the object store.
- `notifier.after_delivery`: the receiver answered, before the delivery is marked done.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

ENV = "REELFORGE_FAULT_DIR"
POINTS = (
    "intake.after_create",
    "dispatcher.after_create_accepted",
    "poller.after_success",
    "outbox.after_publish",
    "storage.mid_upload",
    "notifier.after_delivery",
)


def reach(point: str) -> None:
    """SIGKILL this process here if a test armed `point` (see the module docstring)."""
    directory = os.environ.get(ENV)
    if not directory:
        return
    armed = Path(directory) / point
    try:
        armed.rename(armed.with_name(point + ".fired"))
    except FileNotFoundError:
        return  # not armed, or another process claimed it first
    os.kill(os.getpid(), signal.SIGKILL)
