"""Data-parallel training under torchrun (Gloo, on the CPU) and sweep.py --jobs.

torchrun starts 2 processes on whatever cores there are; each torchrun start and Gloo set-up
costs a few seconds, so the runs are small. Every run here names --device cpu: on a GPU machine
it is the Gloo path that is tested, with the same numbers.
"""
import re
import signal
import sys

import pytest
import torch

from conftest import finish, run_py, start_paused

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def scalar_files(run_dir):
    """{event file: {tag: [steps]}} for each event file of a run that holds per-epoch scalars
    (add_hparams writes its summary into a file of its own)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    found = {}
    for f in sorted(run_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        tags = [t for t in acc.Tags()["scalars"] if not t.startswith("hparam/")]
        if tags:
            found[f.name] = {tag: [e.step for e in acc.Scalars(tag)] for tag in tags}
    return found


def gradient_gap(one, two):
    """How far apart the gradients of two runs' first step are: the largest, over the net's tensors, of
    |g1 - g2| / |g1| (Euclidean norms). Each run is last.pt after one SGD step with momentum, whose
    momentum buffer is then that step's gradient (torch.optim.SGD keeps the first gradient as it is)."""
    gaps = []
    for a, b in zip(one["optimizer"]["state"].values(), two["optimizer"]["state"].values()):
        g1, g2 = a["momentum_buffer"], b["momentum_buffer"]
        gaps.append(float((g1 - g2).norm() / g1.norm()))
    return max(gaps)


# The bound on gradient_gap, from what must pass and what must fail rather than from one CPU (docs/tests.md, bounds):
# - must pass: the same sum of 128 images' gradients in fp32 (the test trains with --precision fp32), added in
#   another order (each process sums its 64, Gloo adds the two) and by other kernels (oneDNN picks them by CPU and
#   batch size): n ~ 1e5 terms for a weight (128 images x up to 784 positions of a 28x28 map). Not fp32's worst
#   case, n * 2**-24 ~ 6e-3 of the terms' absolute sum, which needs one running sum whose every rounding falls the
#   same way (the kernels add in blocks; pairwise, the worst case is log2(n) * 2**-24 ~ 1e-6), but the bound for
#   any order with roundings independent and of mean zero (Higham and Mary 2019, theorem 3.1, lambda = 7):
#   7 * sqrt(n) * 2**-24 ~ 1.3e-4 of the absolute sum for each run, exceeded with a probability under 5e-6; the
#   two runs' errors add (2.6e-4), and 1e-3 leaves a factor 4 for terms that cancel.
# - must fail: processes that never exchange gradients, each stepping with its own half of the batch: 1.18 apart.
# Measured (docs/tests.md, bounds): 2.7e-6 (AVX2-only EPYC), 2.6e-6 (AVX-512 BF16 EPYC); 1.18 without the exchange.
GRADIENT_GAP = 1e-3


# ---------------------------------------------------------------- the pieces, in this process

@pytest.mark.quick
def test_shares_of_a_batch_give_exactly_its_gradient(monkeypatch):
    """Each process's weighted loss on its share, averaged as DDP does, is the whole batch's gradient."""
    import train
    from lab import settings
    from net import Net
    torch.manual_seed(0)
    model = Net()
    x, y = torch.randn(13, 1, 28, 28), torch.randint(0, 10, (13,))  # 13 splits unevenly: 7 + 6, 5 + 4 + 4
    loss_fn = train.make_loss(settings.parse([]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # a step that moves nothing: the gradients stay
    scaler = torch.amp.GradScaler(enabled=False)

    def gradients(idx, weight):
        train.train_step(model, optimizer, scaler, loss_fn, (x[idx], y[idx], weight), "fp32")
        return [p.grad.clone() for p in model.parameters()]

    whole = gradients(torch.arange(13), 1.0)
    for world in (2, 3):
        shares = [torch.arange(13)[rank::world] for rank in range(world)]
        per_process = [gradients(idx, len(idx) * world / 13) for idx in shares]
        averaged = [sum(g) / world for g in zip(*per_process)]  # what DDP's all-reduce makes of them
        assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(averaged, whole))


@pytest.mark.quick
def test_without_torchrun_nothing_changes(monkeypatch):
    from lab import distributed
    from net import Net
    monkeypatch.delenv("RANK", raising=False)
    model = Net()
    assert distributed.setup(torch.device("cpu")) == (torch.device("cpu"), 0, 1)
    assert distributed.wrap(model, torch.device("cpu")) is model
    assert distributed.sum_over_processes(torch.tensor(2.5), torch.tensor(7), 9) == [2.5, 7, 9]


@pytest.mark.quick
def test_threads_are_shared_between_processes(monkeypatch):
    from lab import device as common
    chosen = []
    monkeypatch.setattr(common, "cores", lambda: 8)
    monkeypatch.setattr(common.torch, "set_num_threads", chosen.append)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert common.use_all_cores() == 8  # python train.py: every core
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert common.use_all_cores() == 2  # 4 processes on this machine: a quarter each
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert common.use_all_cores() == 3  # set by the user, torchrun or sweep.py --jobs: it wins
    assert chosen == [8, 2, 3]


@pytest.mark.quick
def test_a_batch_too_small_to_share_is_a_one_line_error():
    from lab.cli import UserError
    from lab.distributed import check_split
    check_split(6000, 128, 2)  # 6000 = 46 x 128 + 112: every batch splits
    with pytest.raises(UserError, match="smallest batch has 1 images, fewer than the 2 processes"):
        check_split(257, 128, 2)


@pytest.mark.quick
def test_sweep_places_runs_on_gpus_or_shares_of_the_cores(monkeypatch):
    import sweep
    monkeypatch.setattr(sweep, "cores", lambda: 8)
    monkeypatch.setattr(sweep.torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert [s["CUDA_VISIBLE_DEVICES"] for s in sweep.slots(3, "auto")] == ["0", "1", "0"]  # round robin
    assert all(s["OMP_NUM_THREADS"] == "2" for s in sweep.slots(4, "auto"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # the user's choice of GPUs is kept
    assert [s["CUDA_VISIBLE_DEVICES"] for s in sweep.slots(2, "cuda")] == ["4", "6"]
    assert sweep.slots(2, "cpu") == [{"OMP_NUM_THREADS": "4"}] * 2  # --device cpu: no GPU, half the cores each


@pytest.mark.quick
def test_sweep_time_left_counts_what_runs_and_what_waits():
    import sweep
    # runs take 10 s; one has run 4 s, three wait, 2 at once: 6 s + 10 s on one side, 10 + 10 on the other
    assert sweep.time_left([10.0], [4.0], 3, 2) == 20.0
    assert sweep.time_left([10.0], [], 0, 2) == 0.0


# ---------------------------------------------------------------- torchrun, for real

def test_torchrun_trains_like_one_process_stops_on_ctrl_c_and_each_resumes_as_the_other(data_dir, tmp_path):
    """The same run in one process and under torchrun with two, each stopped by Ctrl-C in epoch 2. Its first
    step gave both the same gradient: DDP's shares of the batch add up to the whole batch's. Then each is
    finished the other way: the one-process run under torchrun, the torchrun run in one process."""
    # 128 images in one batch: one step an epoch, so step 2 is epoch 2's. SGD with momentum keeps, after its
    # first step, that step's gradient as its momentum buffer: last.pt holds it.
    # --recipe ours: no augmentation, batch norm or averaging, which each process would do to its own share.
    flags = ["--recipe", "ours", "--epochs", 2, "--limit", 128, "--val-size", 500, "--test-limit", 1000, "--seed", 1,
             "--device", "cpu",
             "--precision", "fp32", "--optimizer", "sgd", "--lr", 0.05, "--data-dir", data_dir, "--run-name", "r"]
    proc = start_paused(2, "train.py", *flags, "--logdir", tmp_path / "one", "--checkpoint", tmp_path / "one.pth",
                        cwd=tmp_path)
    proc.send_signal(signal.SIGINT)
    one, err = finish(proc, 300, "the run")
    assert proc.returncode == 130, one + err
    proc = start_paused(2, "train.py", *flags, "--logdir", tmp_path / "two", "--checkpoint", tmp_path / "two.pth",
                        cwd=tmp_path, launcher=TORCHRUN, pauses=2)
    proc.send_signal(signal.SIGINT)  # to torchrun, as a terminal's Ctrl-C: it passes it on to both processes
    two, err = finish(proc, 30, "the run")  # the bound; it takes about a second
    assert proc.returncode != 0
    # rank 0 alone speaks: one start line, each epoch once, one "interrupted"; no traceback from our processes
    assert len(re.findall(r"^Using cpu device .*2 processes \(torchrun\)$", two, re.M)) == 1
    assert two.count("epoch  1/2") == 1 and "epoch  2/2" not in two
    assert err.count("Interrupted during epoch 2.") == 1 and "--resume" in err
    assert "[rank" not in err and "train.py\", line" not in err, err
    # What DDP promises: the gradient that both processes stepped with is the whole batch's.
    states = [torch.load(tmp_path / run / "r" / "last.pt", weights_only=True) for run in ("one", "two")]
    assert states[0]["epoch"] == states[1]["epoch"] == 1
    assert gradient_gap(*states) <= GRADIENT_GAP
    # the loss of the same images at the same starting weights
    losses = lambda text: [float(v) for v in re.findall(r"train loss ([\d.]+)", text)]  # noqa: E731
    assert losses(two) == pytest.approx(losses(one), abs=2e-4) and len(losses(two)) == 1
    # rank 0 alone writes TensorBoard: every event file from one process, one with the scalars, each epoch once
    writers = {f.name.split(".")[-2] for f in (tmp_path / "two" / "r").glob("events.out.tfevents.*")}  # their pids
    files = scalar_files(tmp_path / "two" / "r")
    assert len(writers) == 1 and len(files) == 1, files
    steps = next(iter(files.values()))
    assert {"loss/train", "accuracy/train", "accuracy/val", "accuracy/test"} <= set(steps)
    assert all(s == [1] for s in steps.values()), steps

    # each finished the other way: the torchrun run in one process, the one-process run under torchrun
    alone = run_py("train.py", "--resume", tmp_path / "two" / "r", "--data-dir", data_dir, cwd=tmp_path)
    assert alone.returncode == 0 and "after epoch 1" in alone.stdout and "epoch  2/2" in alone.stdout, alone.stderr
    done = run_py("train.py", "--resume", tmp_path / "one" / "r", "--data-dir", data_dir, cwd=tmp_path,
                  launcher=TORCHRUN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "after epoch 1" in done.stdout and done.stdout.count("epoch  2/2") == 1 and "epoch  1/2" not in done.stdout
    assert done.stdout.count("Best validation accuracy") == 1 and "Traceback" not in done.stderr
    for run in ("one", "two"):
        tags = {}
        for steps in scalar_files(tmp_path / run / "r").values():
            for tag, s in steps.items():
                tags.setdefault(tag, []).extend(s)
        assert sorted(tags["accuracy/val"]) == [1, 2], run  # each epoch once, over the processes' files
        assert torch.load(tmp_path / run / "r" / "last.pt", weights_only=True)["epoch"] == 2
    # a checkpoint of the plain model (no "module." prefix), which test.py and predict.py load as any other
    from net import Net
    assert set(torch.load(tmp_path / "one.pth", weights_only=True)["state_dict"]) == set(Net().state_dict())


# ---------------------------------------------------------------- sweep.py --jobs

GRID = ["--model", "mlp", "cnn2", "--lr", "0.01", "--epochs", 2, "--limit", 2000, "--val-size", 500,
        "--test-limit", 1000, "--device", "cpu"]
RUNS = ["model=mlp", "model=cnn2"]  # both at once under --jobs 2


def best_of(sweep_dir):
    return {run: torch.load(sweep_dir / run / "last.pt", weights_only=True)["best"] for run in RUNS}


def test_sweep_jobs_2_stopped_and_continued_gives_the_runs_of_jobs_1(data_dir, tmp_path, monkeypatch, capsys):
    from lab import device as common
    args = [*GRID, "--data-dir", data_dir]
    # 2,000 images in batches of 128: 16 steps an epoch, so step 18 is the second step of epoch 2.
    proc = start_paused(18, "sweep.py", *args, "--name", "g", "--jobs", 2, cwd=tmp_path, pauses=2)  # runs 1 and 2
    proc.send_signal(signal.SIGINT)  # to the sweep alone: it stops its runs
    out, err = finish(proc, 60, "the run")
    assert proc.returncode == 130, out + err
    assert "Continue it" in err and "--name g" in err and "Traceback" not in err
    assert out.count(": started (") == 2 and err.count("Interrupted during epoch 2.") == 2

    again = run_py("sweep.py", *args, "--name", "g", "--jobs", 2, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.count("after epoch 1") == 2 and again.stdout.count(": done in ") == 2
    assert "left" in again.stdout  # the time estimate once a run has finished

    # --jobs 1, in one process, with the threads each run had under --jobs 2: the very same numbers
    one = run_py("sweep.py", *args, "--name", "one", cwd=tmp_path,
                 env={"OMP_NUM_THREADS": str(max(1, common.cores() // 2))})
    assert one.returncode == 0, one.stdout + one.stderr
    assert best_of(tmp_path / "boardlog" / "g") == best_of(tmp_path / "boardlog" / "one")

    import sweep
    monkeypatch.chdir(tmp_path)  # run again: every run is finished, nothing starts
    assert sweep.main([*map(str, args), "--name", "g", "--jobs", "2"]) == 0
    assert capsys.readouterr().out.count("finished already, skipped") == 2
