"""Data-parallel training under torchrun (Gloo, on the CPU) and sweep.py --jobs.

torchrun starts 2 processes on whatever cores there are; each torchrun start and Gloo set-up
costs a few seconds, so the runs are small. Every run here names --device cpu: on a GPU machine
it is the Gloo path that is tested, with the same numbers.
"""
import json
import re
import signal
import sys

import pytest
import torch

from conftest import ROOT, finish, needs_posix_signals, run_py, start_paused

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
    """How far apart two gradients (lists of tensors, tests/exchanges.py's gradient-RANK.pt) are: the largest,
    over the net's tensors, of |g1 - g2| / |g1| (Euclidean norms)."""
    return max(float((g1 - g2).norm() / g1.norm()) for g1, g2 in zip(one, two))


# The bound on gradient_gap, from what must pass and what must fail rather than from one CPU (docs/tests.md, bounds):
# - must pass: the same sum of 5 images' gradients in fp32 (the test trains with --precision fp32), added in another
#   order (each process sums its share, 3 or 2 images, then Gloo adds the two) and by other kernels (oneDNN picks
#   them by CPU and batch size): n ~ 4e3 terms for a weight (5 images x up to 784 positions of a 28x28 map). Not
#   fp32's worst case, n * 2**-24 ~ 2.4e-4 of the terms' absolute sum, which needs one running sum whose every
#   rounding falls the same way, but the bound for roundings independent and of mean zero (Higham and Mary 2019,
#   theorem 3.1, lambda = 7): 7 * sqrt(n) * 2**-24 ~ 2.7e-5 for each run, exceeded with a probability under 5e-6;
#   the two runs' errors add (5.4e-5), and 1e-3 leaves a factor of about 20 for terms that cancel.
# - must fail: shares weighed wrongly (a weight of 1 for the 3 and the 2 images of the first batch: 0.28 apart) and
#   processes that never exchange gradients, each stepping with its own share (tens of percent).
# Measured (docs/tests.md, bounds): 6.2e-7 (AVX-512 BF16 EPYC, 2 busy cores); with the weight 1, 0.28.
GRADIENT_GAP = 1e-3


def steps_of(record, rank):
    """tests/exchanges.py's record of one process: a step a row, (epoch, its share's images, their weight,
    [the gradient values DDP exchanged, bucket by bucket])."""
    steps = []
    for line in (record / f"rank-{rank}.jsonl").read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if "exchanged" in entry:
            steps[-1][3].append(entry["exchanged"])
        else:
            steps.append((entry["epoch"], entry["images"], entry["weight"], []))
    return steps


def batches_by_epoch(*processes):
    """{epoch: [batch: (the images of each process's share)]} of the processes of one run, from steps_of."""
    assert len({len(steps) for steps in processes}) == 1, processes  # each process a share of every batch
    epochs = {}
    for shares in zip(*processes):
        assert len({epoch for epoch, *_ in shares}) == 1, shares
        epochs.setdefault(shares[0][0], []).append(tuple(images for _, images, *_ in shares))
    return epochs


# ---------------------------------------------------------------- the pieces, in this process

# 19 images in batches of 7: 7, 7 and a last batch of 5, none of which splits evenly over 2 or 3 processes.
N, BATCH = 19, 7
# Each process's weight, its share's size over an even share: world 2 takes 4 + 3 of 7 and 3 + 2 of 5;
# world 3 takes 3 + 2 + 2 of 7 and 2 + 2 + 1 of 5.
WEIGHTS = {2: [(8 / 7, 6 / 7), (8 / 7, 6 / 7), (6 / 5, 4 / 5)],
           3: [(9 / 7, 6 / 7, 6 / 7), (9 / 7, 6 / 7, 6 / 7), (6 / 5, 6 / 5, 3 / 5)]}


def shares(train_set, world):
    """One epoch of lab.data.training_batches as each of `world` processes draws it, all from the same seed as
    under torchrun: [batch][rank] = (images, labels, weight)."""
    from lab.data import training_batches
    return list(zip(*[training_batches(train_set, BATCH, torch.Generator().manual_seed(4), rank=rank, world=world)
                      for rank in range(world)]))


@pytest.mark.quick
def test_training_batches_weigh_uneven_shares_so_they_average_to_the_batch():
    """training_batches' shares of uneven batches: each process's weight, and its weighted mean loss, averaged over
    the processes as DDP averages their gradients, is the whole batch's mean loss (the gradient follows: it is
    linear in the loss). The "images" are logits here, so that the loss is exact arithmetic on known numbers."""
    import train
    from lab import settings
    loss_fn = train.make_loss(settings.parse([]))
    logits = torch.randn(N, 10, generator=torch.Generator().manual_seed(0))  # row i told apart by logits[i, 0]
    labels = torch.arange(N) % 10
    (whole,) = zip(*shares((logits, labels), 1))  # one process: every batch whole, weight 1
    assert [len(y) for _, y, _ in whole] == [7, 7, 5] and all(w == 1 for *_, w in whole)
    for world in (2, 3):
        for b, (batch, share) in enumerate(zip(whole, shares((logits, labels), world))):
            # disjoint, and together the whole batch
            assert sorted(torch.cat([x[:, 0] for x, _, _ in share]).tolist()) == sorted(batch[0][:, 0].tolist())
            # The same 7 (or 5) fp32 losses, added in another order, each share's sum divided, weighed, the shares
            # added and divided: about 13 roundings, each at most 2**-24 (6e-8) of the result: at worst 8e-7 apart
            # (measured: 9e-8 at most). A weight of 1 gives the mean of the shares' means: here 0.27% to 4.6% apart.
            averaged = sum(w * loss_fn(x, y) for x, y, w in share) / world
            assert float(averaged) == pytest.approx(float(loss_fn(batch[0], batch[1])), rel=2e-6), (world, b)
            assert [w for *_, w in share] == pytest.approx(WEIGHTS[world][b], rel=1e-12), (world, b)


@pytest.mark.quick
def test_shares_of_a_batch_give_exactly_its_gradient():
    """Each process's weighted loss on its share from training_batches, averaged as DDP does, is the whole
    batch's gradient: train.train_step on the net, batch by batch of an uneven split."""
    import train
    from lab import settings
    from net import Net
    torch.manual_seed(0)
    model = Net()
    train_set = torch.randn(N, 1, 28, 28), torch.randint(0, 10, (N,))
    loss_fn = train.make_loss(settings.parse([]))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # a step that moves nothing: the gradients stay
    scaler = torch.amp.GradScaler(enabled=False)

    def gradients(batch):
        train.train_step(model, optimizer, scaler, loss_fn, batch, "fp32")
        return [p.grad.clone() for p in model.parameters()]

    (whole,) = zip(*shares(train_set, 1))
    expected = [gradients(batch) for batch in whole]
    for world in (2, 3):
        for b, share in enumerate(shares(train_set, world)):
            averaged = [sum(g) / world for g in zip(*map(gradients, share))]  # what DDP's all-reduce makes of them
            close = [torch.allclose(a, e, rtol=1e-5, atol=1e-7) for a, e in zip(averaged, expected[b])]
            assert all(close), (world, b, close)  # which of the net's tensors


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

@needs_posix_signals
def test_torchrun_trains_like_one_process_stops_on_ctrl_c_and_each_resumes_as_the_other(data_dir, tmp_path):
    """The same run in one process and under torchrun with two, each stopped by Ctrl-C in epoch 2. Their first
    step gave both the same gradient: DDP's shares of the batch add up to the whole batch's. Then each is
    finished the other way: the one-process run under torchrun, the torchrun run in one process. Every step of
    all four (tests/exchanges.py records them): the processes exchanged the whole gradient, and their shares
    made the very batches that one process trains on, epoch by epoch."""
    # 13 images in batches of 5: 5, 5 and 3, three steps an epoch, so step 4 is epoch 2's first. Two processes
    # take 3 + 2 of a 5 and 2 + 1 of the 3: no batch splits evenly, no share weighs 1.
    # --recipe ours: no augmentation, batch norm or averaging, which each process would do to its own share.
    flags = ["--recipe", "ours", "--epochs", 3, "--limit", 13, "--batch-size", 5, "--val-size", 500,
             "--test-limit", 1000, "--seed", 1, "--device", "cpu", "--precision", "fp32", "--optimizer", "sgd",
             "--lr", 0.05, "--data-dir", data_dir, "--run-name", "r"]
    record = {run: tmp_path / f"steps-{run}" for run in ("one", "two", "alone", "done")}
    for folder in record.values():
        folder.mkdir()
    recorded = ["tests/exchanges.py", record["one"], ROOT / "train.py"]
    proc = start_paused(4, *recorded, *flags, "--logdir", tmp_path / "one", "--checkpoint", tmp_path / "one.pth",
                        cwd=tmp_path)
    proc.send_signal(signal.SIGINT)
    one, err = finish(proc, 300, "the run")
    assert proc.returncode == 130, one + err
    recorded[1] = record["two"]
    proc = start_paused(4, *recorded, *flags, "--logdir", tmp_path / "two", "--checkpoint", tmp_path / "two.pth",
                        cwd=tmp_path, launcher=TORCHRUN, pauses=2)
    proc.send_signal(signal.SIGINT)  # to torchrun, as a terminal's Ctrl-C: it passes it on to both processes
    two, err = finish(proc, 30, "the run")  # the bound; it takes about a second
    assert proc.returncode != 0
    # rank 0 alone speaks: one start line, each epoch once, one "interrupted"; no traceback from our processes
    assert len(re.findall(r"^Using cpu device .*2 processes \(torchrun\)$", two, re.M)) == 1
    assert two.count("epoch  1/3") == 1 and "epoch  2/3" not in two
    assert err.count("Interrupted during epoch 2.") == 1 and "--resume" in err
    assert "[rank" not in err and "train.py\", line" not in err, err
    # What DDP promises: the gradient that both processes stepped with first is the whole batch's, 3 + 2 images
    # weighed by training_batches. Both the same to the bit: each value the sum of the same two numbers.
    first = {run: torch.load(record[run] / "gradient-0.pt", weights_only=True) for run in ("one", "two")}
    assert gradient_gap(first["one"], first["two"]) <= GRADIENT_GAP
    assert all(map(torch.equal, first["two"], torch.load(record["two"] / "gradient-1.pt", weights_only=True)))
    # rank 0 alone writes TensorBoard: every event file from one process, one with the scalars, each epoch once
    writers = {f.name.split(".")[-2] for f in (tmp_path / "two" / "r").glob("events.out.tfevents.*")}  # their pids
    files = scalar_files(tmp_path / "two" / "r")
    assert len(writers) == 1 and len(files) == 1, files
    steps = next(iter(files.values()))
    assert {"loss/train", "accuracy/train", "accuracy/val", "accuracy/test"} <= set(steps)
    assert all(s == [1] for s in steps.values()), steps

    # each finished the other way: the torchrun run in one process, the one-process run under torchrun
    alone = run_py(*recorded[:1], record["alone"], ROOT / "train.py", "--resume", tmp_path / "two" / "r",
                   "--data-dir", data_dir, cwd=tmp_path)
    assert alone.returncode == 0 and "after epoch 1" in alone.stdout and "epoch  3/3" in alone.stdout, alone.stderr
    done = run_py(*recorded[:1], record["done"], ROOT / "train.py", "--resume", tmp_path / "one" / "r",
                  "--data-dir", data_dir, cwd=tmp_path, launcher=TORCHRUN)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "after epoch 1" in done.stdout and done.stdout.count("epoch  2/3") == 1 and "epoch  1/3" not in done.stdout
    assert done.stdout.count("Best validation accuracy") == 1 and "Traceback" not in done.stderr
    for run in ("one", "two"):
        tags = {}
        for steps in scalar_files(tmp_path / run / "r").values():
            for tag, s in steps.items():
                tags.setdefault(tag, []).extend(s)
        assert sorted(tags["accuracy/val"]) == [1, 2, 3], run  # each epoch once, over the processes' files
        assert torch.load(tmp_path / run / "r" / "last.pt", weights_only=True)["epoch"] == 3
    # a checkpoint of the plain model (no "module." prefix), which test.py and predict.py load as any other
    from net import Net
    assert set(torch.load(tmp_path / "one.pth", weights_only=True)["state_dict"]) == set(Net().state_dict())

    # Every step, not only the first. One process: epoch 1 and epoch 2's first step, then (resumed) epochs 2 and 3.
    steps = {run: [steps_of(record[run], rank) for rank in ((0, 1) if run in ("two", "done") else (0,))]
             for run in record}
    epochs = {run: batches_by_epoch(*processes) for run, processes in steps.items()}
    one_process = {1: epochs["one"][1], 2: epochs["alone"][2], 3: epochs["alone"][3]}
    for e, batches in one_process.items():  # each epoch a permutation of the 13 images, in batches of 5, 5, 3
        assert [len(images) for (images,) in batches] == [5, 5, 3], e
        assert sorted(sum((images for (images,) in batches), [])) == list(range(13)), e
    assert one_process[2] != one_process[1] and one_process[3] != one_process[2]  # each epoch shuffled anew
    # Under torchrun the two processes' shares of each batch: disjoint, and together the batch one process trains
    # on, at every step of every epoch (a full epoch: all three batches; the interrupted epoch 2: its first).
    for run, full in (("one", {1: 3, 2: 1}), ("alone", {2: 3, 3: 3}), ("two", {1: 3, 2: 1}), ("done", {2: 3, 3: 3})):
        assert {e: len(batches) for e, batches in epochs[run].items()} == full, run
        for e, batches in epochs[run].items():
            for b, shares in enumerate(batches):
                merged = sorted(sum(shares, []))
                assert len(set(merged)) == len(merged), (run, e, b, shares)  # disjoint
                assert merged == sorted(one_process[e][b][0]), (run, e, b, shares)
    # each process's weight: its share's size over an even share (1 for one process)
    for run, processes in steps.items():
        for process in processes:
            for e, images, weight, _ in process:
                batch = next(b for b in epochs[run][e] if images in b)
                assert weight == pytest.approx(len(processes) * len(images) / len(sum(batch, []))), (run, e, images)
    # DDP's exchanges: at every step of each torchrun process, the whole gradient, once; none in one process
    whole = sum(p.numel() for p in Net().parameters())
    for run, count in (("two", 4), ("done", 6)):
        for rank, process in enumerate(steps[run]):
            assert [sum(exchanged) for *_, exchanged in process] == [whole] * count, (run, rank)
    assert not any(exchanged for run in ("one", "alone") for *_, exchanged in steps[run][0])

    # Last, the numbers each run printed: the losses of the same images from the same weights, but for rounding
    # (4 decimals shown). Epoch 1 in one process and under torchrun; epochs 2 and 3 of the runs resumed.
    losses = lambda text: [float(v) for v in re.findall(r"(?:train|val) loss ([\d.]+)", text)]  # noqa: E731
    assert losses(two) == pytest.approx(losses(one), abs=2e-4) and len(losses(two)) == 2
    assert losses(done.stdout) == pytest.approx(losses(alone.stdout), abs=2e-4) and len(losses(done.stdout)) == 4


# ---------------------------------------------------------------- sweep.py --jobs

GRID = ["--model", "mlp", "cnn2", "--lr", "0.01", "--epochs", 2, "--limit", 2000, "--val-size", 500,
        "--test-limit", 1000, "--device", "cpu"]
RUNS = ["model=mlp", "model=cnn2"]  # both at once under --jobs 2


def best_of(sweep_dir):
    return {run: torch.load(sweep_dir / run / "last.pt", weights_only=True)["best"] for run in RUNS}


@needs_posix_signals
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
