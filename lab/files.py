"""Writing the lab's files so that nothing is ever half written.

Every file the lab writes (net.pth, last.pt, JSON, reports, pictures) goes through write_atomic():
the bytes are made in memory first, written to a temporary file beside the target, flushed to
disk, then renamed over it. A full disk, a read-only folder or Ctrl-C at any moment leaves either
the old file or the whole new one, never a part; the failure is one line naming the file and why.
"""

import errno
import io
import json
import os
import time
from pathlib import Path

import torch
from PIL import Image

from lab.cli import UserError


def make_folder(folder, flag):
    """mkdir -p a folder the user named with `flag`; a failure is one line saying why."""
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file in the way, no permission, a link that leads nowhere, a full disk...
        why = "a file is in the way" if isinstance(e, (FileExistsError, NotADirectoryError)) else e.strerror
        raise UserError(f"{flag}: cannot make the folder {folder} ({why})") from None


def why_not_written(error):
    """Why a write failed, and what to do if it is a full disk: "(No space left on device); free some space"."""
    why = error.strerror or str(error) if isinstance(error, OSError) else str(error)
    hint = "; free some space" if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) else ""
    return f"({why}){hint}"


def cannot_write(path, error):
    """The one-line UserError for a failed write of `path`."""
    return UserError(f"cannot write {path} {why_not_written(error)}; anything saved there before is unchanged")


def write_atomic(path, data):
    """Write `data` (bytes) to `path`: afterwards it holds the old file or all of the new one, never half.

    A failure to write (a full disk, a read-only folder, a missing one) is a UserError.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename, or a power cut could leave an empty file
        replace(tmp, path)
    except BaseException as e:  # also Ctrl-C: never leave a temporary file behind
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise cannot_write(path, e) from None
        raise


# On Windows an antivirus scanner, a search indexer or OneDrive (Documents and Desktop are often synced) may
# hold a file for a moment after it is written: os.replace over it then raises PermissionError. Tried again
# after 0.05, 0.1, 0.2, 0.4 s: 0.75 s in all, then the error stands (a real one, or a file held open for good).
REPLACE_WAITS = (0.05, 0.1, 0.2, 0.4)


def replace(tmp, path):
    """os.replace(tmp, path), atomic on POSIX and Windows, tried again briefly on PermissionError."""
    for wait in REPLACE_WAITS:
        try:
            os.replace(tmp, path)
            return
        except PermissionError:
            time.sleep(wait)
    os.replace(tmp, path)


def save_torch(obj, path):
    """torch.save, atomically. Serialised in memory first: torch's zip writer, when the disk fills
    under it, raises a RuntimeError about positions rather than the OSError that says why."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getbuffer())


def write_text(path, text):
    write_atomic(path, text.encode("utf-8"))


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2) + "\n")


def save_png(path, picture, **savefig):
    """A picture as a PNG file: an RGB array or a Pillow image (figures.py), or a matplotlib figure."""
    buffer = io.BytesIO()
    if hasattr(picture, "savefig"):
        picture.savefig(buffer, format="png", **savefig)
    else:
        (picture if isinstance(picture, Image.Image) else Image.fromarray(picture)).save(buffer, "PNG")
    write_atomic(path, buffer.getbuffer())


# What os.link raises where the file system has no hard links: FAT32 and exFAT (USB drives) on Linux EPERM,
# on macOS ENOTSUP, on Windows "Incorrect function" (winerror 1); some network drives ENOTSUP, EXDEV or
# Windows' ERROR_NOT_SUPPORTED (50); a sandbox that denies links EACCES.
NO_HARD_LINKS = {errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS}
NO_HARD_LINKS_WINDOWS = {1, 50}


def no_hard_links(error):
    """Whether `error`, from os.link, says that this folder cannot hold hard links."""
    return error.errno in NO_HARD_LINKS or getattr(error, "winerror", None) in NO_HARD_LINKS_WINDOWS


def claim(tmp, path):
    """Give the finished file `tmp` the name `path` unless a file of that name exists (FileExistsError).

    os.link fails if the name exists: two writers at once each get a name of their own, and a reader
    never sees half a file. Where there are no hard links, the name is claimed by creating it empty,
    which also fails if it exists, and the whole file then replaces that empty one, atomically.
    """
    try:
        os.link(tmp, path)
        return
    except OSError as e:
        if not no_hard_links(e):
            raise  # FileExistsError among them
    open(path, "xb").close()
    try:
        replace(tmp, path)
    except BaseException:  # also Ctrl-C: no empty file left under the name
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass
        raise


def write_new(folder, stem, data, suffix=".png"):
    """Write `data` to a new file in `folder`, named stem.png, else stem-2.png, stem-3.png...: never over a
    file already there (even one that appears meanwhile), and atomically. Returns its path.

    The bytes go to a temporary file first, then get their name (claim).
    """
    folder = Path(folder)
    tmp = folder / f".{stem}.{os.getpid()}.{id(data)}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        for n in range(1, 100_000):
            path = folder / f"{stem}{'' if n == 1 else f'-{n}'}{suffix}"
            try:
                claim(tmp, path)
                return path
            except FileExistsError:
                continue
        raise FileExistsError(errno.EEXIST, "too many files of that name")
    except OSError as e:
        raise cannot_write(folder / f"{stem}{suffix}", e) from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass


def png_bytes(image):
    """A Pillow image as the bytes of a PNG file (lossless: read back, it is the same pixels)."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
