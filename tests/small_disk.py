"""Run one of the lab's scripts as if FOLDER were a small filesystem: SIZE bytes in all, or read-only.

    python tests/small_disk.py FOLDER SIZE rw train.py --logdir FOLDER/boardlog ...
    python tests/small_disk.py FOLDER SIZE ro test.py --json FOLDER/r.json ...

The tests mount a real tmpfs where the machine lets them (tests/conftest.py: small_disk). Where it
does not (no root, a container without the right), they run the scripts through this instead. It
changes nothing in the lab; it wraps Python's open() and os's calls, which is how the lab and
TensorBoard write (lab/files.py, tensorboard's gfile):

    rw  the files under FOLDER may hold SIZE bytes in all: a write past that writes what fits and
        fails with ENOSPC, as on a full disk (fill() in conftest.py leaves a filler file there)
    ro  opening a file for writing, making a folder, renaming or deleting under FOLDER fails with
        EROFS, as on a read-only mount
"""
import builtins
import errno
import importlib
import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WRITES = set("wax+")


def used(folder):
    """Bytes the files under `folder` hold: what a small disk would count."""
    return sum(entry.stat().st_size for entry in Path(folder).rglob("*") if entry.is_file())


class _Capped:
    """A file open for writing under the small disk's folder: each write is counted against its size."""

    def __init__(self, file, folder, size):
        self._file, self._folder, self._size = file, folder, size

    def write(self, data):
        needed = len(data.encode()) if isinstance(data, str) else memoryview(data).nbytes
        room = self._size - used(self._folder)
        if needed > room:  # as a full disk does: what fits is written, then the error
            if room > 0:
                self._file.write(data[:room])
                self._file.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = self._file.write(data)
        self._file.flush()  # on "disk" now, so that used() counts it
        return written

    def __enter__(self):
        return self

    def __exit__(self, *error):
        self._file.close()

    def __getattr__(self, name):  # fileno, flush, close, seek...: the real file's
        return getattr(self._file, name)


def simulate(folder, size, mode):
    """From now on, this process writes under `folder` as on a small disk of `size` bytes (mode "rw")
    or a read-only one (mode "ro")."""
    folder = os.path.realpath(folder)
    real_open = builtins.open

    def inside(path):
        return isinstance(path, (str, bytes, os.PathLike)) and not isinstance(path, int) and \
            os.path.realpath(os.fsdecode(path)).startswith(folder + os.sep)

    def read_only(path):
        return OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))

    def small_open(file, mode="r", *args, **kwargs):
        if not (inside(file) and WRITES & set(mode)):
            return real_open(file, mode, *args, **kwargs)
        if size_or_ro == "ro":
            raise read_only(file)
        return _Capped(real_open(file, mode, *args, **kwargs), folder, size)

    def refused(real, creates=False):
        def call(path, *args, **kwargs):
            if size_or_ro == "ro" and inside(path):
                if creates and os.path.lexists(path):
                    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fsdecode(path))
                raise read_only(path)
            return real(path, *args, **kwargs)
        return call

    size_or_ro = "ro" if mode == "ro" else size
    builtins.open = io.open = small_open
    os.mkdir = refused(os.mkdir, creates=True)
    for name in ("replace", "rename", "unlink", "remove", "rmdir"):
        setattr(os, name, refused(getattr(os, name)))


if __name__ == "__main__":
    folder, size, mode, script, *rest = sys.argv[1:]
    simulate(folder, int(size), mode)
    from lab.cli import run_script  # after simulate(): nothing the lab opens escapes it
    sys.argv = [script, *rest]
    run_script(importlib.import_module(Path(script).stem).main)
