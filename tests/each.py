"""Run one of the lab's scripts once for each list of arguments, in this one process (conftest.run_each).

    python tests/each.py SCRIPT '[["--epochs", "0"], ["--nope"]]'

Each case runs as `python SCRIPT ARGS` would (its main through run_script, with its exit status);
printed on stdout at the end: [[exit status, what it wrote on stderr], ...] as JSON.
"""
import contextlib
import io
import json
import os
import runpy
import sys
import traceback

script, cases = sys.argv[1], json.loads(sys.argv[2])
sys.path.insert(0, os.path.dirname(script))
results = []
for argv in cases:
    sys.argv, err = [script, *argv], io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_path(script, run_name="__main__")
            status = 0
        except SystemExit as e:
            status = e.code
        except BaseException:
            traceback.print_exc()
            status = "escaped"
    results.append([status, err.getvalue()])
sys.stdout.write(json.dumps(results))
