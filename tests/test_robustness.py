"""When things go wrong around the lab: a full disk or a read-only folder under every file it writes,
files from a newer version, Ctrl-C from a shell that ignores it, and two runs on one net.pth.

Every one must end in one line that names the file and the cause, exit status 2, no traceback, and
nothing saved before lost. The disks are real (a small tmpfs) where this machine lets the tests mount
one, else simulated (tests/small_disk.py); the summary at the end of a pytest run says which.
"""
import json
import os
import signal
import sys

import pytest
import torch
from PIL import Image

from conftest import ROOT, finish, needs_posix_signals, put_back_v1_run, run_bounded, run_py, start_paused

FULL, READ_ONLY = "No space left on device", "Read-only file system"


def one_error_line(proc):
    """The single line a failed script printed on stderr (asserting that it is one, and no traceback)."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stdout + proc.stderr
    return lines[0]


# ---------------------------------------------------------------- files from a newer version of the lab

@pytest.mark.quick
def test_scripts_refuse_a_newer_checkpoint_or_run_state(data_dir, tmp_path):
    from lab.checkpoint import load_file
    ckpt = load_file(ROOT / "tests" / "fixtures" / "v1-run" / "net.pth.bin")
    torch.save({**ckpt, "version": 99}, tmp_path / "new.pth")
    line = one_error_line(run_py("test.py", "--checkpoint", tmp_path / "new.pth", "--data-dir", data_dir,
                                 cwd=tmp_path))
    assert f"{tmp_path / 'new.pth'} is a checkpoint of format version 99, newer than this code reads" in line

    run = tmp_path / "boardlog" / "r"
    run.mkdir(parents=True)
    torch.save({"format": "mnist-lab/run-state", "version": 7, "epoch": 1}, run / "last.pt")
    line = one_error_line(run_py("train.py", "--resume", run, "--data-dir", data_dir, cwd=tmp_path))
    assert f"{run / 'last.pt'} is a run state of format version 7" in line
    assert sorted(p.name for p in run.iterdir()) == ["last.pt"]  # nothing written beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["boardlog", "new.pth"]  # no net.pth, no lock


# ---------------------------------------------------------------- full disks and read-only folders

def test_tensorboard_on_a_full_disk_is_one_line_and_keeps_the_saved_run(small_disk, data_dir, tmp_path):
    disk = small_disk("boardlog", 2 * 1024 * 1024)
    run = put_back_v1_run(disk.folder / "v1run")  # stopped after epoch 1 of 2: it resumes
    # ... in fp32: it was trained in bf16, which a CPU without bf16 instructions only emulates (an AVX2-only
    # AMD EPYC took 34 s for its epoch 2 in bf16, most of this test; test_layout resumes it in bf16)
    state = torch.load(run / "last.pt", weights_only=True)
    torch.save({**state, "args": {**state["args"], "precision": "fp32"}}, run / "last.pt")
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    disk.fill(leave=12 * 1024)  # room for the lock and the writer's first events, not for an epoch's pictures

    proc = run_py("train.py", "--resume", run, "--data-dir", data_dir, cwd=tmp_path, launcher=disk.launcher)
    line = one_error_line(proc)
    assert f"cannot write TensorBoard's files in {run} ({FULL}); free some space" in line, disk.kind
    assert f"carry on with python train.py --resume {run}" in line
    assert "epoch  2/2" not in proc.stdout  # it stopped at epoch 2's events, before saving epoch 2
    for name, content in before.items():  # net.pth, last.pt and the old events are as they were
        assert (run / name).read_bytes() == content, name
    assert not (run / "net.pth.lock").exists()  # the lock went with the run
    # The new events file ends in a record cut short; TensorBoard still reads the folder. (Epoch 2's
    # scalars, written before its pictures filled the disk, are dropped by the next resume's purge_step.)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run))
    events.Reload()
    assert [e.step for e in events.Scalars("accuracy/val")][0] == 1


IN_ONE_PROCESS = """
import contextlib, importlib, io, json, sys
sys.path[:0] = [{root!r}, {tests!r}]
if {simulated!r}:
    import small_disk
    small_disk.simulate({folder!r}, {size!r}, {mode!r})
from lab.cli import run_script
for argv in {cases!r}:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            run_script(lambda: importlib.import_module(argv[0][:-3]).main(argv[1:]))
    except SystemExit as e:
        code = e.code
    print(json.dumps({{"case": " ".join(argv), "code": code, "stderr": err.getvalue()}}), flush=True)
"""


@pytest.mark.parametrize("trouble", ["full", "read-only"])
def test_every_output_on_a_full_disk_or_a_read_only_folder(trouble, small_disk, data_dir, tmp_path):
    disk = small_disk("out", 300 * 1024)
    out, data, v1 = disk.folder, data_dir, put_back_v1_run(tmp_path / "v1run")
    (out / "rep").mkdir()
    (out / "report").mkdir()
    (out / "boardlog").mkdir()
    before = {out / "r.json": b"{}", out / "rep" / "confusion.png": b"old", out / "p.json": b"{}",
              out / "s.png": b"old", out / "report" / "report.md": b"old", out / "report" / "curves.png": b"old"}
    for path, content in before.items():
        path.write_bytes(content)
    digit = Image.new("L", (56, 56), 255)  # a 1, dark on white
    digit.paste(0, (25, 8, 31, 48))
    digit.save(tmp_path / "digit.png")
    ckpt = str(v1 / "net.pth")
    small_run = ["--epochs", "1", "--limit", "1000", "--val-size", "100", "--test-limit", "500",
                 "--data-dir", str(data), "--logdir", str(out / "boardlog")]
    cases = {  # each script's case -> what its one line must name
        ("test.py", "--checkpoint", ckpt, "--data-dir", str(data), "--json", str(out / "r.json")): out / "r.json",
        ("test.py", "--checkpoint", ckpt, "--data-dir", str(data), "--report", str(out / "rep")): out / "rep",
        ("predict.py", str(tmp_path / "digit.png"), "--checkpoint", ckpt, "--json", str(out / "p.json")):
            out / "p.json",
        ("predict.py", str(tmp_path / "digit.png"), "--checkpoint", ckpt, "--show", str(out / "s.png")): out / "s.png",
        ("report.py", str(v1), "--out", str(out / "report")): out / "report",
        ("sweep.py", "--model", "mlp", *small_run, "--name", "s"): out / "boardlog" / "s",
        ("train.py", *small_run, "--run-name", "t", "--checkpoint", str(tmp_path / "t.pth")): out / "boardlog" / "t",
    }
    if trouble == "full":
        disk.fill()
    else:
        disk.read_only()
    code = IN_ONE_PROCESS.format(root=str(ROOT), tests=str(ROOT / "tests"), simulated=not disk.real,
                                 folder=str(out), size=disk.size, mode=disk.mode, cases=[list(c) for c in cases])
    # One process for all the cases (torch imported once), each script's main() run as `python SCRIPT` runs it.
    proc = run_bounded([sys.executable, "-c", code], 600, cwd=tmp_path, text=True,
                          env={**os.environ, "MNIST_MIRROR": ""})
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(results) == len(cases), proc.stdout + proc.stderr
    for result, (case, named) in zip(results, cases.items()):
        *notes, line = result["stderr"].strip().splitlines()
        assert result["code"] == 2 and line.startswith("error: ") and "Traceback" not in result["stderr"], result
        assert str(named) in line and (FULL if trouble == "full" else READ_ONLY) in line, (disk.kind, result)
        # v1run stopped after 1 of its 2 epochs, which report.py notes before it writes
        assert not notes or case[0] == "report.py" and all("epochs are logged" in n for n in notes), result
    for path, content in before.items():
        assert path.read_bytes() == content, path  # nothing saved before is lost
    # No part-written file and no lock left; TensorBoard's writer may have made its (empty) events file.
    left = sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and p.name != "filler" and not p.name.startswith("events.out.tfevents."))
    assert left == sorted(str(p.relative_to(out)) for p in before), left
    assert not (tmp_path / "t.pth.lock").exists()


# ---------------------------------------------------------------- Ctrl-C, whatever the shell left ignored

IGNORING_PARENT = """
import signal, subprocess, sys
sys.path.insert(0, {tests!r})
from conftest import start_paused
ask = "import signal; print('ignored' if signal.getsignal(signal.SIGINT) == signal.SIG_IGN else 'heard')"
plain = subprocess.run([sys.executable, "-c", ask], capture_output=True, text=True, timeout=60)
print("a plain child's Ctrl-C:", plain.stdout.strip())
proc = start_paused(2, "train.py", *{args!r}, cwd={cwd!r}, launcher=(sys.executable,))  # a real new process
proc.send_signal(signal.SIGINT)
try:
    out, err = proc.communicate(timeout=120)  # a bound for the failure this test is for, not a wait
except subprocess.TimeoutExpired:
    proc.kill()
    out, err = proc.communicate()
print("exit", proc.returncode)
print(err)
"""


@needs_posix_signals
def test_ctrl_c_reaches_a_run_started_from_a_parent_that_ignores_it(data_dir, tmp_path):
    """As under a background job (`pytest &` from a script), whose children inherit an ignored SIGINT."""
    args = ["--epochs", "1", "--limit", "1000", "--val-size", "100", "--test-limit", "500", "--data-dir", str(data_dir),
            "--checkpoint", str(tmp_path / "net.pth")]
    code = IGNORING_PARENT.format(tests=str(ROOT / "tests"), args=args, cwd=str(tmp_path))
    proc = run_bounded([sys.executable, "-c", code], 300, text=True,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert "a plain child's Ctrl-C: ignored" in proc.stdout, proc.stdout + proc.stderr  # the hard case, really
    assert "exit 130" in proc.stdout and "Interrupted during epoch 1." in proc.stdout, proc.stdout + proc.stderr
    assert not (tmp_path / "net.pth.lock").exists()


# ---------------------------------------------------------------- one run at a time on a net.pth

@needs_posix_signals
def test_a_second_run_on_the_same_checkpoint_is_refused_and_a_killed_runs_lock_is_taken_over(data_dir, tmp_path):
    args = ["--epochs", 1, "--limit", 1000, "--val-size", 100, "--test-limit", 500, "--data-dir", data_dir,
            "--checkpoint", "net.pth"]
    lock = tmp_path / "net.pth.lock"
    first = start_paused(2, "train.py", *args, "--run-name", "a", cwd=tmp_path)  # holds net.pth, in its 2nd step
    line = one_error_line(run_py("train.py", *args, "--run-name", "b", cwd=tmp_path))
    assert f"net.pth is in use by another training run (process {first.pid}" in line
    assert "lock file net.pth.lock" in line and "--checkpoint net-2.pth" in line
    assert not (tmp_path / "boardlog" / "b").exists()  # refused before it made anything

    first.kill()  # kill -9: no chance to clean up; its file stays, naming a process that has ended
    first.communicate()
    assert json.loads(lock.read_text(encoding="utf-8"))["pid"] == first.pid
    third = start_paused(2, "train.py", *args, "--run-name", "c", cwd=tmp_path)  # the system freed the lock
    assert json.loads(lock.read_text(encoding="utf-8"))["pid"] == third.pid
    third.send_signal(signal.SIGINT)
    out, err = finish(third, 300, "the run")
    assert third.returncode == 130, out + err
    assert f"(taking over net.pth.lock: it was left by process {first.pid}, which has ended)" in out
    assert not lock.exists()  # Ctrl-C let it go


@pytest.mark.quick
def test_the_lock_is_the_operating_systems_and_the_line_names_who_holds_it(tmp_path):
    from filelock import FileLock

    from lab.checkpoint import lock_file, refuse_if_locked, release_lock, take_lock
    from lab.cli import UserError
    net = tmp_path / "net.pth"
    lock = lock_file(net)
    lock.write_text(json.dumps({"pid": 4242, "host": "elsewhere", "since": "2030-01-01 10:00:00"}), encoding="utf-8")
    held = FileLock(lock, timeout=0)
    held.acquire()  # another holder of the system's lock: flock conflicts between open files, in one process too
    with pytest.raises(UserError) as e:
        take_lock(net)
    assert "(process 4242 on elsewhere, since 2030-01-01 10:00:00; lock file" in str(e.value)
    assert str(e.value).endswith("--checkpoint " + str(tmp_path / "net-2.pth")) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="in use by another training run"):
        refuse_if_locked(net)  # sweep.py's question
    lock.write_text("", encoding="utf-8")  # a holder that wrote nothing (Windows, a holder other than train.py)
    with pytest.raises(UserError, match=r"another training run \(lock file"):
        take_lock(net)
    held.release()
    mine = take_lock(net)  # a file with no live lock on it is taken, whatever it says
    assert json.loads(lock.read_text(encoding="utf-8"))["pid"] == os.getpid()
    release_lock(mine)
    assert not lock.exists()  # nothing left beside net.pth
    refuse_if_locked(net)  # no file: nobody holds it, and nothing is made


@pytest.mark.quick
def test_a_sweep_leaves_a_run_that_another_sweep_is_training(data_dir, tmp_path, monkeypatch):
    from filelock import FileLock

    import sweep
    from lab.cli import UserError
    run = tmp_path / "boardlog" / "s" / "run"
    run.mkdir(parents=True)  # no last.pt yet: a sweep would clear the folder and start it afresh
    held = FileLock(run / "net.pth.lock", timeout=0)
    held.acquire()  # as the other sweep's run holds it
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="net.pth is in use by another training run"):
        sweep.main(["--model", "mlp", "--epochs", "1", "--data-dir", str(data_dir), "--name", "s"])
    assert sorted(p.name for p in run.iterdir()) == ["net.pth.lock"]
    held.release()
