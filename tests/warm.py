"""Run the lab's scripts for the tests without paying for Python's and torch's start each time.

A new `python train.py` spends 3 to 6 seconds of a 2-core machine before its first step: importing
torch, torch._dynamo (every optimiser imports it), TensorBoard, Captum, and the lab's own modules. The
tests start scripts about a hundred times. So the session starts this file once as a server
(`python -u tests/warm.py FD`, FD a listening socket; under pytest-xdist the controller starts it and
both processes use it), which imports all that once, the lab's scripts too (train, test, predict, draw,
report, sweep, bench, ...: see preload()), and then waits. For each script to run, it forks: the child
is a new process (its own pid, signals, files and exit status) that already has the modules loaded,
and runs the script as `python SCRIPT ARGS` would, through runpy as "__main__", in the cwd and
environment the test gave, with the test's pipes as its stdout and stderr.

The server itself never runs a torch operation, so no OpenMP pool exists when it forks (a forked one
would hang its children). What needs a fresh interpreter still gets one: --help and the
start-up checks, torchrun, the simulated small disk, a parent that ignores Ctrl-C (conftest.run_py's
`fresh=True`).

    client: WarmChild(socket, argv, cwd, env)   a subprocess.Popen-like object: pid, stdout, stderr,
                                                send_signal, kill, poll, wait, communicate, returncode
"""
import io
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER_BOUND_S = 300  # a server that has not answered a request by then (its imports hang) fails the test
ROOT = os.path.dirname(HERE)


# ---------------------------------------------------------------- the server (its own process)

def preload():
    """What the scripts import, imported once here. None of it runs a torch operation (a forked OpenMP pool
    would hang the children); the OpenBLAS threads that numpy and scipy start when imported are stopped by
    OpenBLAS itself at a fork, and started again in a child that needs them."""
    sys.path[:0] = [ROOT, HERE]
    import captum.attr  # noqa: F401
    import captum.robust  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import pausing  # noqa: F401
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (what every optimiser imports on first use: ~1.5 s)
    import torch.distributed  # noqa: F401
    import torch.utils.tensorboard  # noqa: F401
    import torchvision.datasets  # noqa: F401
    from tensorboard.backend.event_processing import event_accumulator  # noqa: F401

    # The lab's scripts themselves, and through them lab/, reading/, inside/, scipy.ndimage: the child runs
    # its script anew as "__main__", but finds all that the script imports already here. Each is imported
    # only for that, so the linter would call it unused and delete it (as it once did): hence the noqa.
    # tests/test_harness.py checks that a child finds every script of the lab loaded.
    import bench  # noqa: F401
    import draw  # noqa: F401
    import handwriting  # noqa: F401
    import net  # noqa: F401
    import predict  # noqa: F401
    import report  # noqa: F401
    import sweep  # noqa: F401
    import test  # noqa: F401  (the lab's test.py: ROOT comes first in sys.path, before the standard library)
    import train  # noqa: F401
    import train_reader  # noqa: F401


def serve(fd):
    """Accept on the listening socket `fd` (bound by the client, so that it exists before anyone connects:
    a connection made while this still imports waits in the socket's queue until it is accepted)."""
    listener = socket.socket(fileno=fd)
    preload()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children: no zombies, pids free at once
    while True:
        conn, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(conn, 1 << 20, 2)
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            listener.close()
            run_child(conn, fds, request)  # never returns
        for fd in fds:
            os.close(fd)
        conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        conn.close()


def run_child(conn, fds, request):
    """In the forked child: become `python SCRIPT ARGS` in the test's cwd and environment, report the exit status."""
    import atexit
    import runpy
    import traceback
    status = 1
    try:
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C heard, as in a terminal
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        # sys.stdout and sys.stderr made anew for these pipes, as `python -u` makes them (the server's are a
        # file's, which a script's reconfigure() would try to seek)
        sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8",
                                                        write_through=True)
        sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8",
                                                        errors="backslashreplace", write_through=True)
        os.chdir(request["cwd"])
        if request.get("nice"):
            os.nice(request["nice"])
        os.environ.clear()
        os.environ.update(request["env"])
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        runpy.run_path(script, run_name="__main__")
        status = 0
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        status = 1
    try:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        conn.sendall(json.dumps({"status": status}).encode() + b"\n")
    finally:
        os._exit(status)


# ---------------------------------------------------------------- the client (in pytest)

class Server:
    """The warm server of this pytest session: started at once, ready when its imports are done.

    Under pytest-xdist the controller starts it, and both processes use it (conftest.py): one start of
    the imports for the session instead of one per process. The socket is bound here, before the server
    starts, so a client can connect at once; its request waits until the server has imported all.
    `env`: the server's environment, which its children inherit until they set their own (libgomp reads
    OMP_NUM_THREADS when torch is imported, so the server must have the tests' value)."""

    def __init__(self, folder, env=None):
        self.path, self.log = os.path.join(folder, "warm.sock"), os.path.join(folder, "warm.log")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        with open(self.log, "w", encoding="utf-8") as log:
            self.proc = subprocess.Popen([sys.executable, "-u", os.path.abspath(__file__), str(listener.fileno())],
                                         pass_fds=[listener.fileno()], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env={**(env or os.environ), "PYTHONUNBUFFERED": "1"})
        listener.close()  # the server's copy is the only one: if it dies, connecting fails instead of waiting

    def close(self):
        self.proc.kill()
        self.proc.wait()


def failed_to_start(path):
    """Why a connection to the server at `path` got no answer: what its log says."""
    log = os.path.join(os.path.dirname(path), "warm.log")
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            said = f.read()
    except OSError:
        said = "(no log)"
    return RuntimeError(f"tests/warm.py ({path}) did not answer within {SERVER_BOUND_S} s, or died; its log {log} "
                        f"says:\n{said}")


class WarmChild:
    """A script run by the warm server: the parts of subprocess.Popen that the tests use (text mode).

    The connection to the server stays open: the child inherited the server's end of it, writes its
    exit status there as its last act, and its exit closes it. A child killed by a signal closes it
    without a status: that is read as -SIGKILL.
    """

    def __init__(self, path, argv, cwd, env, stderr=None, nice=0):
        """stderr: a file to write the child's stderr to (a server's log, which nobody reads as it runs)
        instead of a pipe, which would fill up and stop the child; then self.stderr is None.
        nice: added to the child's niceness (a lower priority)."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe() if stderr is None else (None, os.dup(stderr.fileno()))
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.conn.connect(path)
        except OSError as e:
            raise failed_to_start(path) from e
        socket.send_fds(self.conn, [json.dumps({"argv": list(map(str, argv)), "cwd": str(cwd),
                                                "env": env, "nice": nice}).encode()], [out_w, err_w])
        os.close(out_w)
        os.close(err_w)
        self.stdout = open(out_r, encoding="utf-8", errors="replace")
        self.stderr = None if err_r is None else open(err_r, encoding="utf-8", errors="replace")
        self.returncode, self._buffer = None, b""
        try:
            answer = self._next_line(SERVER_BOUND_S)  # waits while the server still imports; None: it hangs
        except OSError as e:  # reset: the server died with this request in its queue
            raise failed_to_start(path) from e
        if not answer:
            raise failed_to_start(path)
        self.pid = json.loads(answer)["pid"]

    def _next_line(self, timeout):
        """The next line from the server or the child; None if none came within `timeout`; b"" at the end."""
        self.conn.settimeout(timeout)
        while b"\n" not in self._buffer:
            try:
                chunk = self.conn.recv(4096)
            except (socket.timeout, BlockingIOError):
                return None
            if not chunk:
                line, self._buffer = self._buffer, b""
                return line
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def send_signal(self, sig):
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self):
        try:
            self.send_signal(signal.SIGKILL)
        except ProcessLookupError:
            pass

    def poll(self):
        return self.wait(0, poll=True)

    def wait(self, timeout=None, poll=False):
        if self.returncode is None:
            line = self._next_line(timeout)
            if line is None:
                if poll:
                    return None
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            self.returncode = json.loads(line)["status"] if line else -signal.SIGKILL
            self.conn.close()
            while True:  # the status is the child's last act: wait the moment until its pid is gone too
                try:
                    os.kill(self.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.001)
        return self.returncode

    def communicate(self, timeout=None):
        """Read stdout and stderr to their end (the child's exit closes them), then its exit status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        # kept across calls, as Popen does: what came before a TimeoutExpired is part of the next call's answer
        chunks = self._chunks = getattr(self, "_chunks", None) or {f: [] for f in (self.stdout, self.stderr) if f}
        with selectors.DefaultSelector() as sel:
            for f in chunks:
                if not f.closed:
                    sel.register(f.fileno(), selectors.EVENT_READ, f)
            while sel.get_map():
                wait = None if deadline is None else deadline - time.monotonic()
                if wait is not None and wait <= 0:
                    raise subprocess.TimeoutExpired(str(self.pid), timeout)
                for key, _ in sel.select(wait):
                    data = os.read(key.fd, 65536)
                    if data:
                        chunks[key.data].append(data)
                    else:
                        sel.unregister(key.fd)
        texts = tuple(b"".join(chunks[f]).decode("utf-8", "replace") if f else None for f in (self.stdout, self.stderr))
        for f in chunks:
            f.close()
        self.wait(None if deadline is None else max(1.0, deadline - time.monotonic()))
        return texts


if __name__ == "__main__":
    serve(int(sys.argv[1]))
