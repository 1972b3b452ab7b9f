"""A stand-in stage for scheduler tests: records when it ran, optionally waits for another stage to start, or fails.

    python step.py NAME [OUT ...]

Writes times/NAME.start at once, then (after STEP_SLEEP seconds) every OUT (the
name and the content of NAME.in, if any) and times/NAME.json with start, end,
OMP_NUM_THREADS and the execution's MLflow ids that `aegan run` passes. Fails when a file
fail-NAME exists. With STEP_WAIT=NAME:OTHER it first waits (up to 120 s) until
OTHER has started: proof that the two ran at the same time.
"""

import json
import os
import sys
import time
from pathlib import Path

name, outs = sys.argv[1], sys.argv[2:]
Path("times").mkdir(exist_ok=True)
start = time.time()
Path(f"times/{name}.start").write_text(str(start))
if Path(f"fail-{name}").exists():
    sys.exit(f"{name}: failing on purpose")
wait = dict(pair.split(":") for pair in os.environ.get("STEP_WAIT", "").split(",") if pair)
if name in wait:
    deadline = time.time() + 120
    while not Path(f"times/{wait[name]}.start").exists():
        if time.time() > deadline:
            sys.exit(f"{name}: {wait[name]} never started while {name} ran")
        time.sleep(0.05)
time.sleep(float(os.environ.get("STEP_SLEEP", "0.2")))
own_input = Path(f"{name}.in").read_text() if Path(f"{name}.in").exists() else ""
for out in outs:
    Path(out).write_text(f"{name}\n{own_input}")
record = {"start": start, "end": time.time(), "threads": os.environ.get("OMP_NUM_THREADS"),
          "execution_id": os.environ.get("AEGAN_EXECUTION_ID"), "parent_run_id": os.environ.get("AEGAN_PARENT_RUN_ID")}
Path(f"times/{name}.json").write_text(json.dumps(record))
