"""bench.py runs every case and prints one well-formed table. No timing is asserted."""
import re

import pytest

from conftest import run_py


@pytest.mark.quick
def test_bench_quick_prints_the_table(data_dir, tmp_path):
    proc = run_py("bench.py", "--quick", "--data-dir", data_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert re.search(r"^Machine: .+, \d+ cores usable, torch \S+, device (cpu|cuda|mps)", out, re.M)
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    header, body = rows[0], rows[1:]
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "case", "train img/s", "eval img/s", "1-epoch s", "test acc", "peak RSS MiB"]
    assert body[0].startswith("| plain DataLoader, batch 64") and body[1].startswith("| plain DataLoader +")
    assert body[2].startswith("| ours, fp32")
    accuracy = {}
    for row in body:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 6
        for number in cells[1:4] + cells[5:]:
            assert float(number.replace(",", "")) > 0, row
        accuracy[cells[0]] = float(cells[4].rstrip("%"))
    # One epoch, tested on 500: the plain loop on 1,000 images (16 steps of 64) reaches about 66%, ours on
    # 2,000 (16 steps of 128, warming up and annealing) about 81%; a loop that did not learn stays near 10%.
    plain, malloc, *ours = accuracy.values()
    assert plain >= 55 and all(a >= 65 for a in ours), accuracy
    if "device cpu" in out:  # the allocator setting changes no number: the same arithmetic in the same order
        assert plain == malloc, accuracy
    assert re.search(r"best of ours / plain DataLoader: \d+\.\dx", out)
    assert re.search(r"^Compute alone, ours in (fp32|bf16|fp16): [\d,]+ img/s = \d+\.\dx plain", out, re.M)


STEP, WITH_BN, AUGMENTATION, PEN, COARSE, AVERAGE, EVERY_PART = (
    "the step itself (forward, backward, optimiser)", "batch norm (added to the step)",
    "augmentation, all of it (--rotate 12 --scale 0.12 --shift 2.5 --thickness 0.3 --lowres 0.2)",
    "of which the pen (--thickness)", "of which the coarse grid (--lowres)", "the averaged weights (--ema 0.999)",
    "the step with every part on (as train.py runs it)")


@pytest.mark.quick
def test_bench_parts_add_up_to_the_step_with_every_part_on(data_dir, tmp_path):
    """bench.py --parts times each part of the default recipe's step over a few rounds (the median, and the
    rounds' min to max), and the step with every part on, as train.py runs it. The figures must agree with
    each other within the spread the rounds measured: a part timed wrongly, or not timed at all, leaves the
    whole step with more than the step plus its parts (unless the part costs less than the spread; the
    averaged weights, nearly free, may read about 0). No timing is bounded: figures are compared with figures."""
    proc = run_py("bench.py", "--parts", "--quick", "--data-dir", data_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table]
    assert rows[0] == ["part", "ms per batch", "of the step", "rounds: min to max"]
    assert [name for name, *_ in rows[1:]] == [STEP, WITH_BN, AUGMENTATION, PEN, COARSE, AVERAGE, EVERY_PART]
    ms = {}  # each row: (median, min, max) of its rounds, in ms per batch
    for name, median, _, spread in rows[1:]:
        low, high = map(float, spread.split(" to "))
        ms[name] = (float(median), low, high)
        assert low <= float(median) <= high, (name, spread)
    assert ms[STEP][0] > 0 and rows[1][2] == "100%"
    # the step plus its parts (batch norm's own figure is, round by round, the step with it less the step alone)
    parts = [ms[name] for name in (STEP, WITH_BN, AUGMENTATION, AVERAGE)]
    low, high = sum(p[1] for p in parts), sum(p[2] for p in parts)
    whole = ms[EVERY_PART]
    # A part not timed leaves the whole step longer than the step plus its parts, so the check is one way: the
    # whole step's fastest round no slower than the sum of the parts' slowest. The other way is only the noise of
    # a busy machine (seen under another job's load: the step alone 156 ms, every part on 106 ms), as is 5% of the
    # step more (seen: every part on from 46.9 ms, the parts' slowest adding to 46.6). Batch norm untimed still
    # fails: every part on from 104.0 ms against 96.3 + 5.2 (it is 25-30% of the step on the CPUs measured).
    slack = 0.05 * whole[0]
    assert whole[1] <= high + slack, (
        f"every part on: {whole[1]:.2f} to {whole[2]:.2f} ms; the step plus its parts: {low:.2f} to {high:.2f} ms "
        f"(5%: {slack:.2f} ms)", proc.stdout)
    # and the two named parts of the augmentation, run on the whole batch inside it, are no more than all of it
    assert ms[PEN][1] + ms[COARSE][1] <= ms[AUGMENTATION][2], proc.stdout
