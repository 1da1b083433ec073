"""What every script shares: one-line errors, the flags' number types, the flags several scripts take, tables.

Kept small on purpose; each function is a few lines a student can check. Where Windows differs (Ctrl-C to a
child, a child's output, the quoting of a command line), a function asks os.name, or is told the platform.
"""

import argparse
import gc
import os
import re
import shlex
import signal
import subprocess
import sys


class UserError(Exception):
    """A mistake the user can fix (missing file, bad flag, no data, a full disk).

    Scripts print it as one line and exit with status 2, without a traceback.
    """


def run_script(main):
    """Call main(); a UserError becomes one line on stderr and exit status 2, Ctrl-C exit 130."""
    for stream in (sys.stdout, sys.stderr):
        # A Windows console or pipe may use a code page without the arrows and dots we print:
        # replace what it cannot show rather than fail on a character.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    hear_ctrl_break()
    try:
        status = main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        status = 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        status = 130
    except BrokenPipeError:  # the reader went away (python report.py ... | head): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush is quiet too
        status = 141  # what a shell reports for a process stopped by SIGPIPE
    # At exit Python's garbage collector walks every object that torch created (0.5 s on 2 cores)
    # only to free memory that the operating system takes back anyway: keep them out of its sight.
    gc.freeze()
    sys.exit(status)


def popen_hearing_ctrl_c(args, **kwargs):
    """subprocess.Popen, with a child that answers SIGINT (Ctrl-C) even where this process ignores it.

    A shell starts its background jobs (`cmd &`) with SIGINT ignored, and children inherit that. A
    process that stops its children with SIGINT (sweep.py, the tests) must give them a handler:
    exec resets a handled signal to its default, so we handle it (doing nothing) while starting one.
    """
    if os.name != "posix" or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        return subprocess.Popen(args, **kwargs)
    signal.signal(signal.SIGINT, lambda signum, frame: None)
    try:
        return subprocess.Popen(args, **kwargs)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def hear_ctrl_break():
    """On Windows, take Ctrl-Break (SIGBREAK) as Ctrl-C: the same KeyboardInterrupt, the same clean stop.

    It is the one console event a process can send to a group of others (own_group below): sweep.py's
    Ctrl-C reaches its runs that way, and each saves what it has and says "Interrupted", as on POSIX.
    Without a handler, SIGBREAK ends a process at once. POSIX has no SIGBREAK: nothing to do there.
    """
    if hasattr(signal, "SIGBREAK"):
        signal.signal(signal.SIGBREAK, signal.default_int_handler)


def own_group(windows=None):
    """(Popen arguments, signal): a child in a process group of its own, and the signal that is Ctrl-C to it.

    The terminal's Ctrl-C then reaches this process alone, which passes it on, once, to each child.
    POSIX: a session of its own, then SIGINT. Windows has neither: a console group of its own (in which
    Ctrl-C is off), then CTRL_BREAK_EVENT, which the child takes as Ctrl-C (hear_ctrl_break).
    windows: None for this machine; True or False to ask about the other (the tests).
    """
    if windows is None:
        windows = os.name == "nt"
    if windows:
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}, signal.CTRL_BREAK_EVENT
    return {"start_new_session": True}, signal.SIGINT


def utf8_child(env=None):
    """Popen arguments for a Python child whose output is read as text: it writes UTF-8, and it is read as
    UTF-8, whatever the code page (a Chinese Windows has cp936). Left to the locale, a child that wrote
    UTF-8 (PYTHONIOENCODING=utf-8, common advice there) killed the reading thread at its first Chinese
    character, and its full pipe then hung the sweep. errors="replace": a stray byte reads as a mark."""
    return {
        "env": {**(os.environ if env is None else env), "PYTHONIOENCODING": "utf-8"},
        "encoding": "utf-8",
        "errors": "replace",
    }


def shell_join(words, windows=None):
    """A command line to print for the user to type or paste: each word quoted so that their shell reads it
    back whole, spaces and all. shlex.join quotes for POSIX shells with single quotes, which cmd.exe and
    PowerShell do not read as quotes; subprocess.list2cmdline quotes with double quotes, which both do.
    windows: None for this machine; True or False to ask about the other (the tests)."""
    words = [str(w) for w in words]
    if windows is None:
        windows = os.name == "nt"
    if windows:
        return subprocess.list2cmdline(words)
    return shlex.join(words)


# ---------------------------------------------------------------- flags


class _OneLineErrorParser(argparse.ArgumentParser):
    def error(self, message):
        # argparse prints the whole usage before the error; one line is easier to read.
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def make_parser(doc):
    """An argparse parser whose description is the script's docstring (its first line, then its examples)."""
    return _OneLineErrorParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def _number(text, kind, ok, expected):
    """argparse type: `text` as int or float, checked by ok(value); else one clear error line."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not ok(value):  # NaN fails every comparison, so it is refused too
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text):
    return _number(text, int, lambda v: v >= 1, "a whole number of at least 1")


def non_negative_int(text):
    return _number(text, int, lambda v: 0 <= v < 2**63, "a whole number of at least 0")


def int_between(low, high, what="a whole number"):
    """argparse type for a whole number from low to high, e.g. type=int_between(1, 10)."""
    return lambda text: _number(text, int, lambda v: low <= v <= high, f"{what} from {low} to {high}")


def positive_float(text):
    return _number(text, float, lambda v: 0 < v < float("inf"), "a number above 0")


def non_negative_float(text):
    return _number(text, float, lambda v: 0 <= v < float("inf"), "a number of at least 0")


def fraction(text):
    return _number(text, float, lambda v: 0 <= v < 1, "a number from 0 up to (not including) 1")


def share(text):
    return _number(text, float, lambda v: 0 <= v <= 1, "a share from 0 to 1")


# The flags several scripts take, defined once so that their names, defaults and help agree.


def add_checkpoint_flag(parser, help="the checkpoint train.py saved (default: net.pth)", several=False):
    """--checkpoint FILE; with several=True, --checkpoint FILE [FILE ...]: an ensemble (lab/ensemble.py)."""
    if several:
        parser.add_argument(
            "--checkpoint",
            nargs="+",
            default=["net.pth"],
            metavar="FILE",
            help="the checkpoint train.py saved, or several: an ensemble, which reads with the mean "
            "of their probabilities (default: net.pth)",
        )
    else:
        parser.add_argument("--checkpoint", default="net.pth", metavar="FILE", help=help)


def add_device_flag(parser, what="run"):
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cuda", "mps", "cpu"],
        help=f"where to {what}; auto tries cuda, then mps, then cpu (default: auto)",
    )


def add_precision_flag(
    parser, help="auto: bf16/fp16 mixed precision where the hardware does it fast, else fp32 (default: auto)"
):
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"], help=help)


def add_data_flags(parser):
    parser.add_argument(
        "--data-dir", default="mnist", metavar="DIR", help="where MNIST is stored or downloaded to (default: mnist)"
    )
    parser.add_argument(
        "--mirror",
        default=None,
        metavar="DIR_OR_URL",
        help="a folder holding the four MNIST .gz files, or an http(s) URL prefix serving them, "
        "tried before the official mirrors (default: $MNIST_MIRROR)",
    )


# ---------------------------------------------------------------- output


def fmt_time(seconds):
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# Cells that right-align: 1,234  0.5  99.2%  ~3.1  99.1 ± 0.1 (2 of 3)  975/981  2 of 5, and blanks or yes/no among them
_NUMERIC = re.compile(r"[~-]?[\d,]*\.?\d+%?( ± [\d.]+%?)?( \(\d+ of \d+\))?|\d+/\d+|\d+ of \d+|–|n/a|yes|no")


def markdown_table(header, rows):
    """A GitHub markdown table, padded so that it reads in a terminal too; numeric columns right-aligned."""
    rows = [[str(c) for c in row] for row in rows]
    widths = [max(3, *(len(row[i]) for row in [header, *rows])) for i in range(len(header))]
    right = [i > 0 and all(_NUMERIC.fullmatch(row[i]) for row in rows) for i in range(len(header))]

    def line(cells):
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" if r else ":" + "-" * (w + 1) for w, r in zip(widths, right)) + "|"
    return "\n".join([line(header), rule, *map(line, rows)])
