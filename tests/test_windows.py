"""What Windows does differently, played on Linux (issue 50): each choice made for Windows is a small function
told the platform (or with what only Windows has faked), and what can run here runs for real.

- torchrun: NCCL only where torch has it (Windows builds do not), else Gloo; USE_LIBUV=0 documented;
- children's output read as UTF-8, the child told to write UTF-8, under a parent whose code page is not UTF-8;
- os.replace tried again while another program holds the file (PermissionError), then the one-line error;
- write_new where the disk has no hard links (FAT32, exFAT): never over a file, each file whole;
- draw.py binds with SO_EXCLUSIVEADDRUSE on Windows, SO_REUSEADDR here, and a second server hears "in use";
- the commands printed for the user quoted for their shell (cmd.exe and PowerShell read double quotes);
- sweep.py --jobs passes Ctrl-C on as Ctrl-Break to a console group of its own, and the scripts take
  Ctrl-Break (SIGBREAK) as Ctrl-C: a run saves and says "Interrupted".
"""
import errno
import io
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading

import pytest
import torch

from conftest import PAUSE_BOUND_S, ROOT, finish, run_bounded, start
from lab import cli, distributed, files
from lab.cli import UserError

# ---------------------------------------------------------------- torchrun


@pytest.mark.quick
def test_nccl_only_where_torch_has_it():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert distributed.backend(cuda, nccl_available=True) == "nccl"  # Linux with CUDA
    assert distributed.backend(cuda, nccl_available=False) == "gloo"  # Windows with CUDA
    assert distributed.backend(cpu, nccl_available=True) == "gloo"
    assert distributed.backend(cpu, nccl_available=False) == "gloo"


@pytest.mark.quick
def test_setup_joins_with_gloo_on_a_gpu_of_a_torch_without_nccl(monkeypatch):
    """setup() itself, on a CUDA device of a Windows-like torch: the process group it asks for is Gloo's."""
    asked = []
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # not this test process's SIGTERM
    monkeypatch.setattr(distributed.dist, "is_nccl_available", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda *args, **kwargs: asked.append((args, kwargs)))
    monkeypatch.setattr(distributed.dist, "get_world_size", lambda: 2)
    assert distributed.setup(torch.device("cuda")) == (torch.device("cuda", 0), 0, 2)
    assert [(args, kwargs["device_id"]) for args, kwargs in asked] == [(("gloo",), None)]


@pytest.mark.quick
def test_torchrun_doc_says_use_libuv_0_for_powershell_and_cmd():
    text = (ROOT / "docs" / "torchrun.md").read_text(encoding="utf-8")
    assert '$env:USE_LIBUV = "0"' in text and "set USE_LIBUV=0" in text


# ---------------------------------------------------------------- children's output

LINE = "第 1 轮 C:\\Users\\张三\\mnist"  # what a run prints on a Chinese Windows
# The child: that line, then 200 KB of blank lines (which sweep.py does not pass on): more than a pipe holds,
# so that a parent which stopped reading hangs rather than ends. ascii(): the parent's argv is ASCII here.
CHILD = f"print({ascii(LINE)})\nprint(({' ' * 99!r} + chr(10)) * 2000, end='')\n"
PARENT = """import sys
sys.path.insert(0, {root!r})
import bench
import sweep
print("locale", __import__("locale").getencoding())
sweep.TRAIN = [sys.executable, "-c", {child!r}]  # sweep.py --jobs runs this instead of train.py
proc, threads = sweep.launch([], {{}}, "[run 1/1] ")
proc.wait()
for t in threads:
    t.join()
print("bench", bench.child(["-c", {child!r}])[0].splitlines()[0])
"""


def test_a_child_printing_chinese_is_read_whole_under_a_code_page_without_it(tmp_path):
    """sweep.py and bench.py read their children in UTF-8, and tell them to write it, whatever their own code page.

    The parent runs with PYTHONIOENCODING=gbk (which its children would inherit) and, here on Linux, the C
    locale with UTF-8 mode off: a parent reading with its locale's code page reads ASCII, strictly."""
    parent = tmp_path / "parent.py"
    parent.write_text(PARENT.format(root=str(ROOT), child=CHILD), encoding="utf-8")
    env = {"PYTHONIOENCODING": "gbk", "PYTHONUNBUFFERED": "1"}
    if str(ROOT).isascii() and sys.executable.isascii():  # an ASCII file system encoding cannot name the others
        env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    proc = run_bounded([sys.executable, str(parent)], 300, cwd=tmp_path, env={**os.environ, **env})
    out, err = proc.stdout.decode("gbk"), proc.stderr.decode("gbk", errors="replace")
    assert proc.returncode == 0 and "Traceback" not in err and "Exception" not in err, err
    assert f"[run 1/1] {LINE}\n" in out and f"bench {LINE}\n" in out, out


# ---------------------------------------------------------------- os.replace held by another program


def replace_failing(monkeypatch, times):
    """os.replace that raises PermissionError (as on Windows while a scanner holds the file) `times` times first;
    returns the waits that write_atomic made meanwhile."""
    real, failed, waits = files.os.replace, [], []

    def replace(src, dst):
        if len(failed) < times:
            failed.append(dst)
            raise PermissionError(errno.EACCES, "Access is denied")
        real(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    monkeypatch.setattr(files.time, "sleep", waits.append)
    return waits


@pytest.mark.quick
def test_replace_is_tried_again_while_the_file_is_held(tmp_path, monkeypatch):
    (tmp_path / "net.pth").write_bytes(b"old")
    waits = replace_failing(monkeypatch, 2)
    files.write_atomic(tmp_path / "net.pth", b"new")
    assert (tmp_path / "net.pth").read_bytes() == b"new"
    assert waits == list(files.REPLACE_WAITS[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pth"]  # no temporary file left


@pytest.mark.quick
def test_a_file_held_for_good_is_the_one_line_error_within_a_second(tmp_path, monkeypatch):
    (tmp_path / "net.pth").write_bytes(b"old")
    waits = replace_failing(monkeypatch, 10**6)
    with pytest.raises(UserError) as e:
        files.write_atomic(tmp_path / "net.pth", b"new")
    assert str(e.value) == (f"cannot write {tmp_path / 'net.pth'} (Access is denied); "
                            "anything saved there before is unchanged")
    assert 1 < len(waits) and sum(waits) < 1  # a few tries, well under a second in all
    assert (tmp_path / "net.pth").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.pth"]


# ---------------------------------------------------------------- no hard links (FAT32, exFAT)


def links_fail(monkeypatch, error):
    def link(src, dst):
        raise error

    monkeypatch.setattr(files.os, "link", link)


def windows_error(winerror, text):
    e = OSError(errno.EINVAL, text)  # what Python makes of it on Windows: EINVAL, with .winerror set
    e.winerror = winerror
    return e


@pytest.mark.quick
@pytest.mark.parametrize("error", [OSError(errno.EPERM, "Operation not permitted"),  # Linux, FAT32 and exFAT
                                   OSError(errno.ENOTSUP, "Operation not supported"),  # macOS, network drives
                                   windows_error(1, "Incorrect function")],  # Windows, FAT32 and exFAT
                         ids=["EPERM", "ENOTSUP", "winerror 1"])
def test_write_new_without_hard_links_never_writes_over_a_file(tmp_path, monkeypatch, error):
    links_fail(monkeypatch, error)
    (tmp_path / "a.png").write_bytes(b"mine")
    assert files.write_new(tmp_path, "a", b"new") == tmp_path / "a-2.png"
    assert (tmp_path / "a.png").read_bytes() == b"mine" and (tmp_path / "a-2.png").read_bytes() == b"new"
    bodies = [bytes([k]) * 100_000 for k in range(8)]  # eight writers at once: each its own name, each whole
    paths = []
    threads = [threading.Thread(target=lambda b=b: paths.append(files.write_new(tmp_path, "b", b))) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(paths)) == 8 and sorted(p.read_bytes() for p in paths) == sorted(bodies)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


@pytest.mark.quick
def test_write_new_on_a_full_disk_is_still_the_one_line_error(tmp_path, monkeypatch):
    links_fail(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))  # not "no links": no fallback
    with pytest.raises(UserError, match=r"^cannot write .*a\.png \(No space left on device\); free some space"):
        files.write_new(tmp_path, "a", b"new")
    assert list(tmp_path.iterdir()) == []  # neither a temporary file nor an empty one under the name


# ---------------------------------------------------------------- draw.py's port


@pytest.mark.quick
def test_draw_binds_exclusively_on_windows(monkeypatch):
    import draw
    monkeypatch.setattr(socket, "SO_EXCLUSIVEADDRUSE", -5, raising=False)  # it exists on Windows alone
    assert draw.bind_option(windows=True) == -5
    assert draw.bind_option(windows=False) == socket.SO_REUSEADDR


@pytest.mark.quick
def test_a_second_server_on_the_port_hears_in_use():
    import draw
    first = draw.make_server(None, port=0)
    try:
        assert first.socket.getsockopt(socket.SOL_SOCKET, draw.bind_option()) != 0
        port = first.server_address[1]
        with pytest.raises(UserError, match=f"^port {port} is in use"):
            draw.make_server(None, port=port).server_close()
    finally:
        first.server_close()


# ---------------------------------------------------------------- commands printed for the user

WORDS = ["python", "train.py", "--resume", "C:\\Users\\张 三\\boardlog\\第一次 run", "--lr", "0.01"]


@pytest.mark.quick
def test_commands_are_quoted_for_cmd_and_powershell_on_windows():
    assert cli.shell_join(WORDS, windows=True) == \
        'python train.py --resume "C:\\Users\\张 三\\boardlog\\第一次 run" --lr 0.01'
    assert cli.shell_join(["python", "report.py", "C:\\张三"], windows=True) == "python report.py C:\\张三"


@pytest.mark.quick
def test_commands_are_quoted_for_a_posix_shell_elsewhere(monkeypatch):
    words = ["python", "train.py", "--resume", "/home/张 三/boardlog/第一次 run", "--lr", "0.01"]
    line = cli.shell_join(words, windows=False)
    assert line == "python train.py --resume '/home/张 三/boardlog/第一次 run' --lr 0.01"
    assert shlex.split(line) == words  # what bash reads back
    from lab import board
    monkeypatch.setattr(sys, "argv", ["/lab/train.py", "--logdir", "my runs"])
    assert board.command_line() == cli.shell_join(["python", "train.py", "--logdir", "my runs"])


# ---------------------------------------------------------------- sweep.py --jobs and Ctrl-C


@pytest.fixture
def windows_constants(monkeypatch):
    """The two constants that Python has on Windows alone, with their Windows values."""
    monkeypatch.setattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0x200, raising=False)
    monkeypatch.setattr(signal, "CTRL_BREAK_EVENT", 1, raising=False)


@pytest.mark.quick
def test_children_get_a_group_of_their_own_by_platform(windows_constants):
    assert cli.own_group(windows=True) == ({"creationflags": 0x200}, 1)
    assert cli.own_group(windows=False) == ({"start_new_session": True}, signal.SIGINT)


class Child:
    """A stand-in for a Popen of train.py: what sweep.py passes and sends to it."""

    def __init__(self, args, **kwargs):
        self.args, self.kwargs, self.sent = args, kwargs, []
        self.stdout, self.stderr = io.StringIO("a line\n"), io.StringIO()

    def poll(self):
        return None

    def send_signal(self, signum):
        self.sent.append(signum)

    def wait(self, timeout=None):
        return 130


@pytest.mark.quick
def test_sweep_starts_and_stops_its_runs_as_windows_needs(windows_constants, monkeypatch, capsys):
    import sweep
    monkeypatch.setattr(sweep, "own_group", lambda: cli.own_group(windows=True))
    monkeypatch.setattr(sweep, "popen_hearing_ctrl_c", Child)
    child, threads = sweep.launch(["--epochs", "1"], {"OMP_NUM_THREADS": "1"}, "[run 1/1] ")
    sweep.stop({child: (1, "run", "label", {}, 0.0, threads)})
    assert child.kwargs["creationflags"] == 0x200 and "start_new_session" not in child.kwargs
    assert child.kwargs["encoding"] == "utf-8" and child.kwargs["env"]["PYTHONIOENCODING"] == "utf-8"
    assert child.sent == [1]  # CTRL_BREAK_EVENT, not terminate()
    assert capsys.readouterr().out == "[run 1/1] a line\n"


WRAPPER = """import runpy, signal, sys
signal.SIGBREAK = signal.SIGUSR1  # Windows' Ctrl-Break, played by a signal Linux has
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")  # tests/pausing.py STEP train.py ...
"""


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="plays SIGBREAK with SIGUSR1, which Windows lacks")
def test_a_run_takes_ctrl_break_as_ctrl_c(data_dir, tmp_path):
    """What sweep.py sends a run on Windows (CTRL_BREAK_EVENT, SIGBREAK in the child): it saves and says so."""
    wrapper = tmp_path / "as_on_windows.py"
    wrapper.write_text(WRAPPER, encoding="utf-8")
    # 300 images in batches of 128: 3 steps an epoch, so step 4 is the first step of epoch 2. Forked from the warm
    # server (as conftest.start_paused does, with the wrapper first): its imports are done.
    proc = start([wrapper, ROOT / "tests" / "pausing.py", 4, ROOT / "train.py", "--model", "mlp", "--epochs", 2,
                  "--limit", 300, "--val-size", 100, "--test-limit", 100, "--device", "cpu", "--data-dir", data_dir,
                  "--run-name", "r"], tmp_path)
    watchdog = threading.Timer(PAUSE_BOUND_S, proc.kill)  # only for a hang: it fires on no working run
    watchdog.start()
    try:
        early = []
        for line in proc.stderr:  # blocks until the child speaks: no clock involved
            if "paused at step 4" in line:
                break
            early.append(line)
    finally:
        watchdog.cancel()
    proc.send_signal(signal.SIGUSR1)
    out, err = finish(proc, 300, "the run")
    assert proc.returncode == 130 and "Traceback" not in err, "".join(early) + err
    assert "Interrupted during epoch 2." in err and "--resume" in err
    assert torch.load(tmp_path / "boardlog" / "r" / "last.pt", weights_only=True)["epoch"] == 1
