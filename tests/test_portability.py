"""What this Linux machine can check of the scripts' portability to Windows and macOS.

It cannot run them on Windows: os.name stays "posix" here, so the branches for Windows (os.name ==
"nt", the missing os.kill(pid, 0) of a lock check) are not run by these tests. What they check:
- no script or lab module imports a POSIX-only module at its top (resource, fcntl, termios, ...);
- every script's --help works with what Windows lacks taken away first: those modules, os.wait4,
  os.sched_getaffinity, os.fork and glibc (the lab's mallopt call);
- bench.py without getrusage says n/a; output in a code page without our arrows does not fail.
"""
import ast
import sys

import pytest

from conftest import ROOT, run_bounded

POSIX_ONLY = {"resource", "fcntl", "termios", "tty", "pty", "pwd", "grp", "crypt", "syslog",
              "readline", "curses", "nis", "spwd", "ossaudiodev"}
SCRIPTS = sorted(p.name for p in ROOT.glob("*.py")
                 if "run_script(" in (text := p.read_text(encoding="utf-8")) and "__main__" in text)
SOURCES = sorted(str(p.relative_to(ROOT)) for p in [*ROOT.glob("*.py"), *ROOT.glob("lab/*.py"),
                                                        *ROOT.glob("reading/*.py"), *ROOT.glob("inside/*.py")])


def top_level_imports(path):
    """Modules a file imports when it is imported: its module-level statements, not those in functions."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        for sub in ast.walk(node) if not isinstance(node, (ast.FunctionDef, ast.ClassDef)) else ():
            if isinstance(sub, ast.Import):
                names |= {a.name.split(".")[0] for a in sub.names}
            elif isinstance(sub, ast.ImportFrom) and sub.module and not sub.level:
                names.add(sub.module.split(".")[0])
    return names


@pytest.mark.quick
def test_the_scripts_are_found():
    assert {"train.py", "test.py", "predict.py", "sweep.py", "report.py", "bench.py"} <= set(SCRIPTS)


@pytest.mark.quick
@pytest.mark.parametrize("name", SOURCES)
def test_no_posix_only_module_is_imported_at_the_top(name):
    assert not top_level_imports(ROOT / name) & POSIX_ONLY


AS_ON_WINDOWS = """
import contextlib, io, os, runpy, sys
for name in {posix!r}:
    sys.modules[name] = None  # "import resource" now raises ImportError, as on Windows
for name in ("wait4", "sched_getaffinity", "fork"):
    if hasattr(os, name):
        delattr(os, name)
import ctypes
real_cdll = ctypes.CDLL
def no_glibc(name, *args, **kwargs):  # torch loads its own libraries through CDLL too
    if str(name).startswith("libc.so"):
        raise OSError(f"no {{name}} here")
    return real_cdll(name, *args, **kwargs)
ctypes.CDLL = no_glibc
sys.path.insert(0, {root!r})
for script in {scripts!r}:  # one process for all: importing torch once, not once a script
    sys.argv, out = [script, "--help"], io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(os.path.join({root!r}, script), run_name="__main__")
        code = "no exit"
    except SystemExit as e:
        code = e.code
    print(f"{{script}} exit {{code}}: {{out.getvalue()[:6]!r}}")
"""


# (not in the quick tier: it starts a new interpreter for every script)
def test_help_works_without_posix_parts(tmp_path):
    code = AS_ON_WINDOWS.format(posix=sorted(POSIX_ONLY), scripts=SCRIPTS, root=str(ROOT))
    proc = run_bounded([sys.executable, "-c", code], 300, cwd=tmp_path, text=True)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.splitlines() == [f"{script} exit 0: 'usage:'" for script in SCRIPTS]


@pytest.mark.quick
def test_bench_without_getrusage_says_n_a():
    import bench
    assert bench.mib(None) == "n/a" and bench.mib(1234.4) == "1,234"
    saved = sys.modules.get("resource")
    sys.modules["resource"] = None
    try:
        assert bench.peak_rss_mib() is None
    finally:
        if saved is None:
            del sys.modules["resource"]
        else:
            sys.modules["resource"] = saved


@pytest.mark.quick
def test_output_in_a_code_page_without_our_arrows_does_not_fail(tmp_path):
    """predict.py prints '→' and '·'; a Windows pipe in cp1252 has neither. run_script replaces them."""
    code = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from lab.cli import run_script; " \
           "run_script(lambda: print('digit.png  →  7 · 3') or 0)"
    proc = run_bounded([sys.executable, "-c", code], 60, cwd=tmp_path,
                          env={"PYTHONIOENCODING": "cp1252", "PATH": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode("cp1252").strip() == "digit.png  ?  7 · 3"  # · exists in cp1252, → does not
