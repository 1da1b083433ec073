"""The tests' own machinery: a child that hangs fails its test with what it printed, within a bound."""
import json
import os
import sys
import time
from pathlib import Path

import pytest

import conftest
from conftest import needs_linux, run_bounded, run_py, start_paused


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
def test_the_warm_server_has_the_lab_and_its_libraries_imported(tmp_path):
    """What tests/warm.py says it preloads, a child forked from it finds loaded: torch's heavy parts, Captum,
    TensorBoard, and every script of the lab (each top-level file with a __main__), from the project (its
    test.py, not the standard library's test package)."""
    scripts = sorted(p.stem for p in conftest.ROOT.glob("*.py")
                     if 'if __name__ == "__main__"' in p.read_text(encoding="utf-8"))
    assert {"bench", "draw", "predict", "report", "sweep", "test", "train"} <= set(scripts)
    (tmp_path / "modules.py").write_text("import json, sys\n"
                                         "print(json.dumps({n: getattr(m, '__file__', None) for n, m in "
                                         "list(sys.modules.items())}))\n", encoding="utf-8")
    proc = run_py(tmp_path / "modules.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout)
    for name in ("torch", "torch._dynamo", "torch.utils.tensorboard", "captum.attr", "torchvision.datasets"):
        assert name in loaded, name
    where = {name: loaded.get(name) and Path(loaded[name]).resolve() for name in scripts}
    assert where == {name: conftest.ROOT / f"{name}.py" for name in scripts}


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


TINY_SUITE = """import sys
import pytest
sys.path.insert(0, {tests!r})
from conftest import missing

def test_wants_chromium():
    missing("no Chromium here")

@pytest.mark.skipif(True, reason="needs Linux")
def test_on_linux_only():
    pass
"""


def test_what_ci_installs_fails_there_when_missing_and_skips_elsewhere(tmp_path):
    """conftest.missing(): a test that lacks what CI installs (Chromium, the fonts, MNIST) is skipped with the
    reason in a student's plain pytest, and fails where CI=true; a test skipped for its platform skips in both."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")  # not the project's (-n 2)
    (tmp_path / "test_tiny.py").write_text(TINY_SUITE.format(tests=str(conftest.ROOT / "tests")), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "CI" and not k.startswith("PYTEST_")}
    said = {}
    for ci in ("", "true"):
        proc = run_bounded([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "test_tiny.py"],
                           120, cwd=tmp_path, env={**env, "CI": ci}, text=True, encoding="utf-8", errors="replace")
        said[ci] = (proc.returncode, proc.stdout)
    student, ci = said[""], said["true"]
    assert student[0] == 0 and "2 skipped" in student[1], student
    assert "SKIPPED [1] test_tiny.py:7: no Chromium here" in student[1], student
    assert ci[0] == 1 and "1 failed, 1 skipped" in ci[1], ci
    assert "FAILED test_tiny.py::test_wants_chromium - Failed: no Chromium here (CI=true: CI must have it)" in ci[1], ci
    assert "SKIPPED [1] test_tiny.py:9: needs Linux" in ci[1], ci
