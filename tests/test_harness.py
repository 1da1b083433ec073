"""The tests' own machinery: a child that hangs fails its test with what it printed, within a bound."""
import time

import pytest

import conftest
from conftest import needs_linux, run_py, start_paused


def test_a_run_that_never_pauses_fails_with_what_it_printed(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "PAUSE_BOUND_S", 3)
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"(?s)hung for 3 s\) before pausing at step 1.*about to hang"):
        start_paused(1, "tests/hangs.py", cwd=tmp_path)
    assert time.monotonic() - t0 < 60


def test_a_script_that_hangs_fails_with_what_it_printed(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(pytest.fail.Exception, match=r"(?s)did not end within 3 s.*about to hang"):
        run_py("tests/hangs.py", cwd=tmp_path, timeout=3)
    assert time.monotonic() - t0 < 60


@needs_linux
@pytest.mark.quick
def test_the_warm_server_runs_a_script_as_python_would(tmp_path):
    """Exit status, stdout, stderr, cwd, environment and argv of a script forked from tests/warm.py."""
    (tmp_path / "s.py").write_text("import os, sys\nprint(os.getcwd(), os.environ['MARK'], sys.argv[1:])\n"
                                   "print('to stderr', file=sys.stderr)\nsys.exit(3)\n", encoding="utf-8")
    proc = run_py(tmp_path / "s.py", "a", "b c", cwd=tmp_path, env={"MARK": "here"})
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, f"{tmp_path} here ['a', 'b c']\n", "to stderr\n")


@needs_linux
@pytest.mark.quick
def test_a_warm_server_that_dies_fails_the_script_with_its_log(tmp_path):
    """A server whose interpreter cannot start (here: no standard library) answers no request: the request
    fails at once with what the server printed, whether it died before or after the request was queued."""
    from warm import Server, WarmChild
    server = Server(str(tmp_path), env={"PYTHONHOME": str(tmp_path / "nowhere")})
    try:
        with pytest.raises(RuntimeError, match=r"(?s)did not answer.*its log .*warm\.log says:\n.*encodings"):
            WarmChild(server.path, [tmp_path / "s.py"], tmp_path, {})
    finally:
        server.close()
