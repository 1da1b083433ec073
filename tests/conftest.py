"""Shared fixtures: real MNIST from a local mirror, and one short real training per session.

The data comes from $MNIST_MIRROR, or ../shared/mnist beside the project (as in CI).
No test touches the network.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def mirror_folder():
    for candidate in (os.environ.get("MNIST_MIRROR"), ROOT.parent / "shared" / "mnist"):
        if candidate and (Path(candidate) / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mirror():
    folder = mirror_folder()
    if folder is None:
        pytest.skip("no local MNIST mirror: set MNIST_MIRROR to a folder with the four .gz files")
    return folder


@pytest.fixture(scope="session")
def data_dir(mirror, tmp_path_factory):
    """A data folder with MNIST extracted, shared by the whole session (read-only for tests)."""
    from lab.data import ensure_mnist
    folder = tmp_path_factory.mktemp("mnist")
    ensure_mnist(folder, mirror=str(mirror))
    return folder


def run_py(script, *args, cwd, env=None, timeout=600, launcher=(sys.executable,)):
    """Run one of the project's scripts as a user would, without a network and without a terminal.

    `launcher` runs it, e.g. torchrun: [sys.executable, "-m", "torch.distributed.run", ...].
    """
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "MNIST_MIRROR": "", **(env or {})}
    return subprocess.run([*launcher, str(ROOT / script), *map(str, args)], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def start_paused(step, script, *args, cwd, launcher=(sys.executable,), pauses=1):
    """Start `script` so that it stops after training step `step` (see tests/pausing.py).

    Returns the process once it has said so (`pauses` times: once per process under torchrun),
    so that a signal sent next lands in that step on any machine, fast or slow.
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MNIST_MIRROR": ""}
    proc = subprocess.Popen([*launcher, str(ROOT / "tests" / "pausing.py"), str(step), str(ROOT / script),
                             *map(str, args)], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)
    seen, early = 0, []
    for line in proc.stderr:  # blocks until the child speaks: no clock involved
        # Counted anywhere in a line: sweep.py --jobs prefixes its runs' lines with the run's name.
        found = line.count(f"paused at step {step}")
        seen += found
        if seen >= pauses:
            return proc
        if not found:
            early.append(line)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"{script} ended before pausing at step {step}:\n{out}{''.join(early)}{err}")


@pytest.fixture(scope="session")
def trained(data_dir, tmp_path_factory):
    """One short real training run (2 epochs on 12,000 images), reused by several tests.

    Returns a dict with the folder, checkpoint path, log dir, run dir and the finished process.
    """
    work = tmp_path_factory.mktemp("trained")
    proc = run_py("train.py", "--epochs", 2, "--limit", 12000, "--data-dir", data_dir,
                  "--logdir", work / "boardlog", "--run-name", "r1", "--checkpoint", work / "net.pth",
                  "--seed", 3, cwd=work)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return {"dir": work, "checkpoint": work / "net.pth", "logdir": work / "boardlog",
            "run_dir": work / "boardlog" / "r1", "proc": proc, "data_dir": data_dir}
