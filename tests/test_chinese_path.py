"""A Chinese student's machine, played here: the project in a folder whose path has Chinese characters and a
space, each script's main path run once in a fresh interpreter, its output going to files in the code page of
a Chinese Windows console (PYTHONIOENCODING=gbk), then the cheap ones again in plain ASCII.

Fresh interpreters, not the warm server (tests/warm.py): its children write UTF-8 whatever the environment
says, and have every module imported already from the project's own folder. Each run must end with status 0,
its output must decode strictly in the encoding it was given (a script that wrote around sys.stdout's
error handler, or died on a character, fails here), and what it saves must land where it was asked, inside
the Chinese folder. Tiny data: every script once, about a minute of the suite's time.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, device_args

SOURCES = ["lab", "reading", "inside", "draw"]  # with every script at the top
HOME = "学生 实验"  # "student experiments": Chinese characters and a space, as in C:\Users\张三\Desktop\...
RUN_BOUND_S = 300  # only for a hang: each run here takes seconds


def copy_project(to):
    """The scripts and packages as a student's copy has them (no tests, no docs, no caches)."""
    to.mkdir(parents=True)
    for script in ROOT.glob("*.py"):
        shutil.copy(script, to / script.name)
    for package in SOURCES:
        shutil.copytree(ROOT / package, to / package, ignore=shutil.ignore_patterns("__pycache__"))


def stand_in_font(cache):
    """A font for handwriting.py under the name it looks for: the real one where .fonts/ has it, else
    matplotlib's DejaVu Sans (shipped on every platform: FreeType reads it whatever the file's extension).
    What is tested is where it is read from, not how it writes."""
    cache.mkdir()
    real = ROOT / ".fonts" / "caveat-latin-400-normal.woff2"
    if not real.is_file():
        import matplotlib
        real = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    shutil.copy(real, cache / "caveat-latin-400-normal.woff2")


class Student:
    """The project copied to .../学生 实验/mnist 实验室, MNIST extracted inside it, scripts run from there."""

    def __init__(self, base, data_dir):
        self.home = base / HOME / "mnist 实验室"
        copy_project(self.home)
        shutil.copytree(data_dir / "MNIST" / "raw", self.home / "mnist" / "MNIST" / "raw")  # the default --data-dir
        stand_in_font(self.home / ".fonts")
        self.logs = self.home / "输出"  # "output": where each run's stdout and stderr go
        self.logs.mkdir()

    def run(self, encoding, script, *args):
        """`python SCRIPT ARGS` here, stdout and stderr to files in `encoding`: their text, decoded strictly."""
        name = f"{script}-{len(list(self.logs.iterdir()))}.{encoding}"
        out_file, err_file = self.logs / f"{name}.out", self.logs / f"{name}.err"
        env = {**os.environ, "PYTHONIOENCODING": encoding, "PYTHONUNBUFFERED": "1", "MNIST_MIRROR": ""}
        argv = [sys.executable, str(self.home / script), *device_args(script), *map(str, args)]
        with open(out_file, "wb") as out, open(err_file, "wb") as err:
            proc = subprocess.run(argv, cwd=self.home, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                                  timeout=RUN_BOUND_S)
        # strict: a byte the encoding cannot have fails here, with its position
        out, err = out_file.read_bytes().decode(encoding), err_file.read_bytes().decode(encoding)
        assert proc.returncode == 0, f"{script} {args} under PYTHONIOENCODING={encoding}:\n{out}\n{err}"
        assert "Traceback" not in err, err
        return out, err


@pytest.fixture(scope="module")
def student(data_dir, tmp_path_factory):
    return Student(tmp_path_factory.mktemp("zh"), data_dir)


TRAIN = ["--recipe", "ours", "--epochs", 1, "--limit", 300, "--val-size", 100, "--test-limit", 200]


# Neither test is in the quick tier: fresh interpreters, nine here (about 40 s on 2 cores), and the ASCII one
# alone trains a net of its own; the quick tier runs each script's main path already.
def test_every_script_runs_from_a_chinese_folder_into_a_gbk_console(student):
    home = student.home
    out, _ = student.run("gbk", "train.py", *TRAIN, "--run-name", "第一次")  # "the first time"
    assert (home / "net.pth").is_file() and (home / "boardlog" / "第一次" / "last.pt").is_file()
    assert "第一次" in out  # the run's name comes through in the console's code page, not as "???"

    student.run("gbk", "test.py", "--report", "报告")
    assert (home / "报告" / "confusion.png").is_file()

    make_digit_photo(home / "数字 7.png")
    out, _ = student.run("gbk", "predict.py", "数字 7.png", "--show", "看到的.png")
    assert "数字 7.png" in out and (home / "看到的.png").is_file()

    student.run("gbk", "sweep.py", *TRAIN, "--lr", 0.01, 0.001, "--jobs", 2, "--name", "扫描")
    runs = sorted(p.name for p in (home / "boardlog" / "扫描").iterdir() if (p / "last.pt").is_file())
    assert runs == ["lr=0.001", "lr=0.01"], runs

    student.run("gbk", "report.py", home / "boardlog" / "扫描", "--out", "扫描报告")
    assert (home / "扫描报告" / "report.md").is_file()

    out, _ = student.run("gbk", "net.py")
    assert "130,890" in out

    student.run("gbk", "handwriting.py", "--fonts", "caveat", "--per-digit", 1, "--out", "手写", "--font-cache",
                ".fonts")
    assert sorted(p.name for p in (home / "手写").iterdir()) == [str(d) for d in range(10)]

    student.run("gbk", "bench.py", "--quick")


def test_the_cheap_ones_again_into_an_ascii_console(student):
    """In ASCII: every character beyond it replaced ("数字" becomes "??"), no run stopped by one."""
    home = student.home
    if not (home / "net.pth").is_file():  # run alone (-k ascii): a net of its own
        student.run("ascii", "train.py", *TRAIN, "--run-name", "第一次")
    make_digit_photo(home / "数字 7.png")
    out, _ = student.run("ascii", "predict.py", "数字 7.png", "--show", "看到的 ascii.png")
    assert "?? 7.png" in out and (home / "看到的 ascii.png").is_file()
    student.run("ascii", "report.py", home / "boardlog" / "第一次", "--out", "报告 ascii")
    assert (home / "报告 ascii" / "report.md").is_file()
    student.run("ascii", "net.py")
    student.run("ascii", "handwriting.py", "--fonts", "caveat", "--per-digit", 1, "--out", "手写 ascii",
                "--font-cache", ".fonts")
    assert sorted(p.name for p in (home / "手写 ascii").iterdir()) == [str(d) for d in range(10)]


def make_digit_photo(path):
    """A test image of MNIST's as a student's photo would be: dark ink on white, enlarged."""
    from PIL import Image

    from lab.data import load_split
    images, _ = load_split(False, path.parent / "mnist")
    Image.fromarray(255 - images[0].numpy()).resize((140, 140)).save(path)
