"""Shared fixtures: real MNIST from a local mirror, one short real training per session, runs
paused at a known step for Ctrl-C, and small or read-only disks.

The data comes from $MNIST_MIRROR, or ../shared/mnist beside the project (as in CI).
No test touches the network.
"""
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# pytest.ini runs the suite in two processes (pytest-xdist): each, and every script it starts, gets its
# share of the cores. Two torch thread pools as wide as the machine each would spin against each other
# (measured: runs up to 5 times slower). An OMP_NUM_THREADS already set has the last word.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if WORKERS > 1 and "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // WORKERS))

# The shared training (SharedTraining, below) is what the tests that need a trained net wait for, and it
# runs on one core: the processes of the tests run a little behind it (niceness 5, where the OS has it), so
# that it ends first and no core stands idle while they wait. It alone keeps the priority pytest started with.
TESTS_NICE = 5 if WORKERS > 1 and hasattr(os, "nice") else 0
if TESTS_NICE:
    os.nice(TESTS_NICE)  # this process, and what it starts as a new process; the warm server's children below

from lab.cli import popen_hearing_ctrl_c  # noqa: E402  (after the path is set)

# ---------------------------------------------------------------- other systems than Linux

LINUX = sys.platform.startswith("linux")
# The warm server (tests/warm.py) forks a process that has imported torch: sound on Linux only (macOS's system
# libraries do not survive a fork, Windows has none). Elsewhere each script starts a fresh interpreter.
WARM = LINUX
needs_linux = pytest.mark.skipif(not LINUX, reason="Linux only: tests/warm.py forks and passes sockets")
# Popen.send_signal on Windows knows no SIGINT (and os.kill no SIGKILL): a test that presses Ctrl-C is POSIX's.
needs_posix_signals = pytest.mark.skipif(os.name != "posix", reason="sends SIGINT or SIGKILL, which Windows lacks")

# GitHub's macOS arm64 runners offer an MPS device that fails: LAB_TESTS_DEVICE=cpu (the workflow sets it) runs
# the scripts that pick a device on the CPU instead.
TESTS_DEVICE = os.environ.get("LAB_TESTS_DEVICE")
PICKS_DEVICE = {"train.py", "test.py", "predict.py", "bench.py", "sweep.py"}


def device_args(script):
    """["--device", $LAB_TESTS_DEVICE] for a script that takes it, else []: put before the test's own
    flags, so that a test's own --device (later on the line) still wins."""
    return ["--device", TESTS_DEVICE] if TESTS_DEVICE and Path(script).name in PICKS_DEVICE else []


# CI installs all that a student's machine may lack: .ci/run exports CI=true, and GitHub Actions sets it too.
CI = os.environ.get("CI", "").lower() in ("true", "1")


def missing(reason):
    """Skip the test for want of something installed apart (Chromium, the handwriting fonts, the MNIST files),
    with the reason; under CI=true fail it instead, so that a CI run that silently skipped a group cannot pass.
    (A test that cannot run on this platform, e.g. needs Linux, skips with pytest.skip, CI or not.)"""
    __tracebackhide__ = True  # the skip is reported at the test's line that called this, not here
    if CI:
        pytest.fail(f"{reason} (CI=true: CI must have it)", pytrace=False)
    pytest.skip(reason)


def mirror_folder():
    for candidate in (os.environ.get("MNIST_MIRROR"), ROOT.parent / "shared" / "mnist"):
        if candidate and (Path(candidate) / "t10k-labels-idx1-ubyte.gz").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mirror():
    folder = mirror_folder()
    if folder is None:
        missing("no local MNIST mirror: set MNIST_MIRROR to a folder with the four .gz files")
    return folder


@pytest.fixture(scope="session")
def data_dir(mirror, tmp_path_factory):
    """A data folder with MNIST extracted, shared by the whole session and its xdist processes (read-only for
    tests): the first to need it extracts it (1-4 s), under a lock that the others wait on."""
    from filelock import FileLock

    from lab.data import ensure_mnist
    folder = session_root(tmp_path_factory) / "mnist"
    with FileLock(str(folder) + ".lock", timeout=TRAIN_BOUND_S):
        ensure_mnist(folder, mirror=str(mirror))  # at once where the files are there
    return folder


WARM_SOCKET = "LAB_TESTS_WARM_SOCKET"  # the warm server's socket, for the processes xdist starts
_warm = None  # tests/warm.py's server, if this process started it


def pytest_configure(config):
    """Under pytest-xdist, the controller (which runs no test) starts the warm server before it starts its
    processes, and both use it: one start of the imports for the session, not one a process, done while
    they collect the tests. (With -n 0 the one process starts its own at its first script.)"""
    global _warm
    workers = getattr(config.option, "numprocesses", None)
    if not WARM or hasattr(config, "workerinput") or not workers or WARM_SOCKET in os.environ:
        return
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, (os.cpu_count() or 1) // int(workers)))
    _warm = start_warm_server({**os.environ, "OMP_NUM_THREADS": threads})
    os.environ[WARM_SOCKET] = _warm.path  # inherited by the processes xdist starts next


def pytest_unconfigure(config):
    if _warm is not None:
        _warm.close()


def warm_socket():
    """The warm server's socket: the controller's, or one this process starts now."""
    global _warm
    if WARM_SOCKET in os.environ:
        return os.environ[WARM_SOCKET]
    if _warm is None:
        _warm = start_warm_server()
    return _warm.path


def start_warm_server(env=None):
    import tempfile

    from warm import Server
    return Server(tempfile.mkdtemp(prefix="warm-"), env)


def script_env(env=None):
    """The environment a test runs a script in: no network mirror unless given, output unbuffered."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", "MNIST_MIRROR": "", **(env or {})}


def start(argv, cwd, env=None, launcher=None, stderr=None, nice=None):
    """Start `python ARGV...` (argv[0] a script path): forked from the warm server (tests/warm.py), or, with a
    `launcher` (e.g. torchrun, or (sys.executable,) for a fresh interpreter), as a real new process.
    Either way a process of its own, which hears Ctrl-C whatever pytest inherited (lab/cli.py).
    stdout is a pipe; stderr too, or the file `stderr` (then proc.stderr is None). `nice`: the warm child's
    niceness, TESTS_NICE unless given."""
    argv = [argv[0], *device_args(argv[0]), *argv[1:]]
    if launcher is None and WARM:
        from warm import WarmChild
        return WarmChild(warm_socket(), argv, cwd, script_env(env), stderr, TESTS_NICE if nice is None else nice)
    # UTF-8 both ways, as the warm server's children write: not the locale's code page (Windows' cp1252)
    return popen_hearing_ctrl_c([*(launcher or (sys.executable,)), *map(str, argv)], cwd=cwd,
                                env=script_env({"PYTHONIOENCODING": "utf-8", **(env or {})}), stdout=subprocess.PIPE,
                                stderr=stderr or subprocess.PIPE, encoding="utf-8", errors="replace",
                                stdin=subprocess.DEVNULL)


def finish(proc, timeout, what):
    """proc.communicate(timeout), but a child that hangs is killed and fails the test with what it printed."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=60)
        pytest.fail(f"{what} did not end within {timeout} s; it printed:\n{out}\n{err}", pytrace=False)


def run_bounded(args, timeout, **kwargs):
    """subprocess.run(args, timeout=..., capture_output=True, ...), but a child that hangs fails the test with
    what it printed (subprocess.run's own TimeoutExpired would say only that it timed out)."""
    try:
        return subprocess.run(args, timeout=timeout, capture_output=True, **kwargs)
    except subprocess.TimeoutExpired as e:
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else (x or "") for x in (e.stdout, e.stderr))
        pytest.fail(f"{args[:3]}... did not end within {timeout} s; it printed:\n{out}\n{err}", pytrace=False)


def run_py(script, *args, cwd, env=None, timeout=600, launcher=None, fresh=False):
    """Run one of the project's scripts as a user would, without a network and without a terminal.

    Forked from the warm server (tests/warm.py), unless `fresh` (a new interpreter, for what its start
    itself must show) or a `launcher` runs it, e.g. torchrun: [sys.executable, "-m", "torch.distributed.run", ...].
    """
    launcher = launcher or ((sys.executable,) if fresh else None)
    proc = start([ROOT / script, *args], cwd, env, launcher)
    _started.append(proc)
    out, err = finish(proc, timeout, f"{script} {' '.join(map(str, args))}")
    return subprocess.CompletedProcess([script, *args], proc.returncode, out, err)


def run_each(script, cases, cwd, timeout=600):
    """[(exit status, stderr)] of `python SCRIPT ARGS` for each ARGS in `cases`, all in one child process
    (tests/each.py): one start of a script's imports instead of one per case. For cases that end early,
    like the one-line errors; a run that trains works too, one after the other."""
    cases = [[*device_args(script), *map(str, c)] for c in cases]
    proc = run_py("tests/each.py", ROOT / script, json.dumps(cases), cwd=cwd,
                  timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return [tuple(r) for r in json.loads(proc.stdout)]


_started = []  # what start_paused() and run_py() started: ended after each test, passed or failed


@pytest.fixture(autouse=True)
def _end_paused_runs():
    """A test that fails before its paused run ends would leave it waiting for ever: kill it."""
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=60)


PAUSE_BOUND_S = 300  # a child that never pauses (a hang before its first step, a rendezvous): fail, not wait


def start_paused(step, script, *args, cwd, launcher=None, pauses=1, env=None):
    """Start `script` so that it stops after training step `step` (see tests/pausing.py).

    Returns the process once it has said so (`pauses` times: once per process under torchrun),
    so that a signal sent next lands in that step on any machine, fast or slow. One that has not
    paused within PAUSE_BOUND_S is killed, and the test fails with what it printed.
    """
    # It must answer the SIGINT a test sends even where pytest itself runs with SIGINT ignored
    # (a background job, `cmd &`, and whatever it starts, inherit that): start() sees to it.
    proc = start([ROOT / "tests" / "pausing.py", step, ROOT / script, *device_args(script), *args], cwd, env, launcher)
    _started.append(proc)
    watchdog = threading.Timer(PAUSE_BOUND_S, proc.kill)  # only for a hang: it fires on no working run
    watchdog.start()
    seen, early, proc.pauses = 0, [], []  # proc.pauses: the lines that said so (which process, which rank)
    try:
        for line in proc.stderr:  # blocks until the child speaks: no clock involved
            # Counted anywhere in a line: sweep.py --jobs prefixes its runs' lines with the run's name.
            found = line.count(f"paused at step {step}")
            seen += found
            if found:
                proc.pauses.append(line)
            if seen >= pauses:
                return proc
            if not found:
                early.append(line)
    finally:
        watchdog.cancel()
    proc.kill()
    out, err = proc.communicate(timeout=60)
    raise AssertionError(f"{script} ended (or hung for {PAUSE_BOUND_S} s) before pausing at step {step}:\n"
                         f"{out}{''.join(early)}{err}")


def put_back_v1_run(run):
    """tests/fixtures/v1-run (see its README) as the run folder `run`, whose net.pth is boardlog/v1run/net.pth:
    run it from the folder above boardlog/. Stopped after epoch 1 of 2, so it resumes."""
    run.mkdir(parents=True)
    source = ROOT / "tests" / "fixtures" / "v1-run"
    shutil.copy(source / "net.pth.bin", run / "net.pth")
    shutil.copy(source / "last.pt.bin", run / "last.pt")
    shutil.copy(source / "events.bin", run / "events.out.tfevents.1796139137.vm.4422.0")
    return run


# --recipe ours: the net that the tests of reading (photos, pages, the browser) were set against on every CPU we
# know, and the quickest; the default recipe's own run is tested apart (test_recipe.py).
TRAINED_ARGS = ("--recipe", "ours", "--epochs", 2, "--limit", 12000, "--run-name", "r1", "--seed", 3)


class SharedTraining:
    """The one short real training of a session, shared by pytest-xdist's processes and started early.

    It is most of the quick tier's floor (12-40 s of one core, by machine), and every process used to make
    its own. Now the first process to start a test, if any test of the session needs `trained`, starts it in
    the background (forked from the warm server) and holds a lock on it until it has ended and its output is
    saved; a process that needs it waits on that lock (bounded), the others run their tests meanwhile.
    """

    def __init__(self, root):
        self.root, self.work = root, root / "trained"
        self.result = self.work / "result.json"
        self.thread = None

    def lock(self, name, timeout):
        from filelock import FileLock
        return FileLock(str(self.root / name), timeout=timeout, thread_local=False)

    def start(self, data_dir):
        """Start the training unless a process of this session already has: claimed under a lock, started in a
        thread (its first request to the warm server waits until the server has imported all)."""
        from lab.files import write_json  # here: it imports torch, which pytest's controller never needs
        with self.lock("trained.start.lock", timeout=TRAIN_BOUND_S):
            if (self.root / "trained.started").exists():
                return
            held = self.lock("trained.lock", timeout=TRAIN_BOUND_S)
            held.acquire()  # released by the thread below, once the result is saved
            (self.root / "trained.started").touch()
        self.work.mkdir()
        argv = [ROOT / "train.py", *TRAINED_ARGS, "--data-dir", data_dir, "--logdir", self.work / "boardlog",
                "--checkpoint", self.work / "net.pth"]

        def in_background():
            try:
                try:
                    proc = start(argv, self.work, nice=0)  # not in _started: it outlives the test that started it
                    out, err = proc.communicate(timeout=TRAIN_BOUND_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    out, err = proc.communicate(timeout=60)
                    err += f"\n(killed: it did not end within {TRAIN_BOUND_S} s)"
                except Exception as e:  # a test that needs it fails with this, instead of waiting for ever
                    proc, out, err = None, "", f"the shared training did not start: {e}"
                write_json(self.result, {"returncode": proc.returncode if proc else 1, "stdout": out, "stderr": err})
            finally:
                held.release()

        self.thread = threading.Thread(target=in_background, daemon=True)
        self.thread.start()

    def wait(self):
        """The finished training's output, once it has ended (in whichever process started it)."""
        with self.lock("trained.lock", timeout=TRAIN_BOUND_S):
            assert self.result.is_file(), "the shared training saved no result"
            return json.loads(self.result.read_text(encoding="utf-8"))

    def join(self):
        if self.thread is not None:
            self.thread.join(TRAIN_BOUND_S)


TRAIN_BOUND_S = 600
_training = None


def needs_trained(item):
    return "trained" in getattr(item, "fixturenames", ())


def session_root(tmp_path_factory):
    """A folder of this pytest session that all its xdist processes share (each has its own basetemp in it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def _start_shared_training(request, tmp_path_factory):
    """Before this process's first test: start the shared training if any test of the session needs it
    (and there is a mirror: without one, those tests skip, as `data_dir` says, and the others run)."""
    global _training
    _training = SharedTraining(session_root(tmp_path_factory))
    if mirror_folder() is not None and any(needs_trained(item) for item in request.session.items):
        _training.start(request.getfixturevalue("data_dir"))
    yield
    _training.join()  # a process that started it must not leave before it has saved its output


@pytest.fixture(scope="session")
def trained(data_dir):
    """One short real training run (2 epochs on 12,000 images), reused by many tests, in both xdist processes.

    Returns a dict with the folder, checkpoint path, log dir, run dir and the finished process.
    """
    result = _training.wait()
    proc = subprocess.CompletedProcess(["train.py", *TRAINED_ARGS], result["returncode"], result["stdout"],
                                       result["stderr"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    work = _training.work
    return {"dir": work, "checkpoint": work / "net.pth", "logdir": work / "boardlog",
            "run_dir": work / "boardlog" / "r1", "proc": proc, "data_dir": data_dir}


# ---------------------------------------------------------------- small and read-only disks

SIMULATE = os.environ.get("LAB_TEST_DISK") == "simulated"  # to try the fallback on a machine that can mount
_disk_kinds = {}  # the kind of small disk each test used, for the summary at the end


class SmallDisk:
    """A folder on a filesystem of `size` bytes: a real tmpfs where this machine lets us mount one, else
    a simulated one (tests/small_disk.py: the scripts run through it, and their writes under the folder
    fail with ENOSPC or EROFS where a real small disk's would). Run scripts with `launcher=disk.launcher`."""

    def __init__(self, folder, size, real):
        self.folder, self.size, self.real, self.mode = Path(folder), size, real, "rw"
        self.kind = f"tmpfs of {size // 1024} KB" if real else "simulated (tests/small_disk.py)"

    @property
    def launcher(self):
        if self.real:
            return (sys.executable,)
        return (sys.executable, str(ROOT / "tests" / "small_disk.py"), str(self.folder), str(self.size), self.mode)

    def free(self):
        if self.real:
            st = os.statvfs(self.folder)
            return st.f_bavail * st.f_frsize
        from small_disk import used  # here: only the simulated disk needs it
        return self.size - used(self.folder)

    def fill(self, leave=0):
        """Fill the disk up, leaving `leave` bytes free (a multiple of 4096: tmpfs counts in pages)."""
        with open(self.folder / "filler", "wb") as f:
            if self.real:  # real bytes: tmpfs does not count a sparse file's holes
                f.write(bytes(self.free() - leave))
            else:
                f.truncate(self.free() - leave)
        assert self.free() == leave, self.free()

    def read_only(self):
        if self.real:
            subprocess.run(["mount", "-o", "remount,ro", str(self.folder)], check=True)
        self.mode = "ro"


def _mount(folder, size):
    """Mount a tmpfs of `size` bytes on `folder`; False where this machine does not let us."""
    if SIMULATE or os.name != "posix" or os.geteuid() != 0 or not shutil.which("mount"):
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path, request):
    """small_disk(name, size): a SmallDisk at tmp_path/name. Real mounts are unmounted at the end."""
    made = []

    def make(name, size):
        folder = tmp_path / name
        folder.mkdir()
        disk = SmallDisk(folder, size, _mount(folder, size))
        made.append(disk)
        _disk_kinds[request.node.nodeid] = disk.kind
        return disk

    yield make
    for disk in made:
        # lazily (-l) if a process still inside keeps it busy (a failed test's; they are killed next)
        if disk.real and subprocess.run(["umount", str(disk.folder)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(disk.folder)], check=True)


def pytest_collection_modifyitems(items):
    """Run first what needs no trained net, while the shared training runs (see SharedTraining).

    Modules that never use `trained` go first, and within a module its tests that do not use it;
    otherwise the order stays as collected. pytest.ini's --no-loadscope-reorder keeps this order when
    pytest-xdist hands the modules to its two processes (by default it sends the largest modules first).
    """
    order, module_uses = {}, {}
    for item in items:
        order.setdefault(item.module, len(order))
        module_uses[item.module] = module_uses.get(item.module, False) or needs_trained(item)
    # sorted() is stable: the collected order stays within each group
    items.sort(key=lambda item: (module_uses[item.module], order[item.module], needs_trained(item)))


def pytest_terminal_summary(terminalreporter):
    """Say which small disks the full-disk tests used: a real tmpfs, or the simulated one."""
    if _disk_kinds:
        kinds = sorted(set(_disk_kinds.values()))
        terminalreporter.write_line(f"small disks: {len(_disk_kinds)} tests used {' and '.join(kinds)}")
