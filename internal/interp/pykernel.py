# The Python kernel of sbx's code interpreter: one process per context, run
# by the server (pykernel.go). It runs cells through IPython's
# InteractiveShell, the shell ipykernel wraps, without ipykernel, ZeroMQ or
# a Jupyter session: requests come on fd 3, one JSON object a line,
#
#   {"id": ID, "code": CODE, "env": {NAME: VALUE}}
#
# and replies go to fd 4 as JSON lines shaped like Jupyter iopub messages,
# {"parent": ID, "msg_type": TYPE, "content": {...}}: execute_input (the
# execution count), stream, display_data, update_display_data,
# execute_result, error, and last status idle. The first line,
# {"msg_type": "started"}, says the kernel is ready.
#
# Output: sys.stdout and sys.stderr are streams that queue each write as a
# message; one writer thread sends the queue, merging what queued up while
# the cell ran, so output streams as it is written and in the order it was
# made with displays. Fds 1 and 2 are pipes read by threads of their own,
# so what subprocesses write is the cell's output too; it is drained
# before a cell's end. The process's first stderr stays the server's log.
#
# Interrupts: SIGINT raises KeyboardInterrupt while a cell runs and is
# ignored otherwise. Only the main thread takes it (the others block it), so
# it also ends a blocking call such as time.sleep. No write to fd 4 is ever
# cut by it: only the writer thread writes there.
#
# Every name here is private to this module; the user's namespace is
# IPython's.

import codecs
import errno
import json
import math
import os
import queue
import select
import signal
import sys
import threading
import types

REQUESTS, REPLIES = 3, 4
# Text merged into one stream message at most, so that one line stays a
# reasonable size for the server to parse.
MERGE_LIMIT = 1 << 20

os.set_inheritable(REQUESTS, False)
os.set_inheritable(REPLIES, False)
log = os.fdopen(os.dup(2), "w", buffering=1, closefd=True)
os.set_inheritable(log.fileno(), False)

out_queue = queue.SimpleQueue()
state = {"parent": None, "running": False, "n": 0, "dropped": 0}
output_limit = int(os.environ.pop("SBX_OUTPUT_LIMIT", "0") or 0)


def clean(v):
    """v with NaN and infinities as None, bytes as base64 text: what JSON
    can carry, as ipykernel's json_clean makes it."""
    if isinstance(v, float):
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, dict):
        return {str(k): clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, (bytes, bytearray, memoryview)):
        import base64

        return base64.b64encode(bytes(v)).decode("ascii")
    return v


def default(v):
    if isinstance(v, (bytes, bytearray, memoryview)):
        import base64

        return base64.b64encode(bytes(v)).decode("ascii")
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "tolist"):
        return v.tolist()
    return str(v)


def encode(m):
    try:
        s = json.dumps(m, default=default, allow_nan=False, ensure_ascii=False)
    except ValueError:
        s = json.dumps(clean(m), default=default, ensure_ascii=False)
    return s.encode("utf-8", "surrogateescape") + b"\n"


def send(parent, msg_type, content):
    out_queue.put({"parent": parent, "msg_type": msg_type, "content": content})


def write_all(b):
    view = memoryview(b)
    while view:
        try:
            n = os.write(REPLIES, view)
        except InterruptedError:
            continue
        view = view[n:]


def writer():
    """Sends the queue to fd 4, merging consecutive stream messages of one
    cell and stream into one."""
    pending = None
    while True:
        batch = [pending if pending is not None else out_queue.get()]
        pending = None
        while True:
            try:
                batch.append(out_queue.get_nowait())
            except queue.Empty:
                break
        chunks = []
        last = None
        for m in batch:
            if (
                last is not None
                and m["msg_type"] == "stream"
                and last["msg_type"] == "stream"
                and m["parent"] == last["parent"]
                and m["content"]["name"] == last["content"]["name"]
                and len(last["content"]["text"]) < MERGE_LIMIT
            ):
                last["content"] = {"name": last["content"]["name"], "text": last["content"]["text"] + m["content"]["text"]}
                continue
            if last is not None:
                chunks.append(encode(last))
            last = m
        chunks.append(encode(last))
        try:
            write_all(b"".join(chunks))
        except OSError:
            os._exit(0)  # the server is gone


def limited(text):
    """The part of text the running cell may still write (output_limit
    characters a cell); what is cut is counted for the note at its end."""
    if not output_limit:
        return text
    room = output_limit - state["n"]
    if len(text) > room:
        keep = text[: max(room, 0)]
        state["dropped"] += len(text) - len(keep)
        text = keep
    state["n"] += len(text)
    return text


class Stream:
    """sys.stdout or sys.stderr of the cells: each write is a stream
    message of the running cell."""

    def __init__(self, name, fd):
        self.name = name
        self._fd = fd
        self.encoding = "utf-8"
        self.errors = "strict"

    def write(self, s):
        if not isinstance(s, str):
            raise TypeError("write() argument must be str, not %s" % type(s).__name__)
        n = len(s)
        parent = state["parent"]
        if parent is not None and s:
            s = limited(s)
            if s:
                send(parent, "stream", {"name": self.name, "text": s})
        return n

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        return self._fd

    def readable(self):
        return False

    def writable(self):
        return True

    def seekable(self):
        return False

    @property
    def closed(self):
        return False

    def close(self):
        pass


fd_lock = threading.Lock()
fd_pipes = []  # (read end, stream name, incremental decoder)


def capture_fd(fd, name):
    """Makes fd a pipe whose reader sends what is written to it as the
    running cell's output on stream name."""
    r, w = os.pipe()
    os.dup2(w, fd)
    os.close(w)
    os.set_blocking(r, False)
    os.set_inheritable(r, False)
    fd_pipes.append((r, name, codecs.getincrementaldecoder("utf-8")(errors="replace")))


def drain(entry):
    """Sends what the pipe of entry holds now. Call with fd_lock held."""
    r, name, dec = entry
    while True:
        try:
            b = os.read(r, 65536)
        except BlockingIOError:
            return
        except InterruptedError:
            continue
        if not b:
            return
        text = dec.decode(b)
        parent = state["parent"]
        if text and parent is not None:
            text = limited(text)
            if text:
                send(parent, "stream", {"name": name, "text": text})


def fd_reader(entry):
    while True:
        try:
            select.select([entry[0]], [], [])
        except InterruptedError:
            continue
        with fd_lock:
            drain(entry)


def drain_fds():
    sys.__stdout__.flush()
    sys.__stderr__.flush()
    with fd_lock:
        for entry in fd_pipes:
            drain(entry)


def on_sigint(signum, frame):
    if state["running"]:
        raise KeyboardInterrupt


# The threads take no SIGINT: it is blocked while they start, so they
# inherit the mask, and unblocked in the main thread after.
signal.signal(signal.SIGINT, on_sigint)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
threading.Thread(target=writer, name="sbx-writer", daemon=True).start()
sys.stdout.flush()
sys.stderr.flush()
capture_fd(1, "stdout")
capture_fd(2, "stderr")
for entry in fd_pipes:
    threading.Thread(target=fd_reader, args=(entry,), name="sbx-fd", daemon=True).start()
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

sys.stdout = Stream("stdout", 1)
sys.stderr = Stream("stderr", 2)
sys.stdin = open(os.devnull)

# Importing IPython imports its terminal application too (prompt_toolkit,
# the terminal debugger) for IPython.embed, and its completer imports jedi:
# most of a kernel's start, for nothing a kernel uses. Both are kept out
# until the shell is up (unstub), and load as usual if the user's code
# imports them.
stubs = {"IPython.terminal.embed": types.ModuleType("IPython.terminal.embed"), "jedi": None}


def embed(**kwargs):
    sys.modules.pop("IPython.terminal.embed", None)
    from IPython.terminal.embed import embed as real

    return real(**kwargs)


stubs["IPython.terminal.embed"].embed = embed
for name, mod in stubs.items():
    sys.modules.setdefault(name, mod)


def unstub():
    for name, mod in stubs.items():
        if sys.modules.get(name, False) is mod:
            del sys.modules[name]


from IPython.core.displayhook import DisplayHook  # noqa: E402
from IPython.core.displaypub import DisplayPublisher  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from traitlets import Type  # noqa: E402
from traitlets.config import Config  # noqa: E402


class Hook(DisplayHook):
    """The cell's value: an execute_result, as ipykernel's
    ZMQShellDisplayHook sends it."""

    def start_displayhook(self):
        self._data = None

    def write_output_prompt(self):
        pass

    def write_format_data(self, format_dict, md_dict=None):
        self._data = (format_dict, md_dict or {})

    def finish_displayhook(self):
        if self._data is not None and state["parent"] is not None:
            data, md = self._data
            send(state["parent"], "execute_result", {"data": data, "metadata": md, "execution_count": self.prompt_count})
        self._data = None


class Publisher(DisplayPublisher):
    """display(): display_data (update_display_data for an update), in
    order with the cell's output."""

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs):
        if state["parent"] is None:
            return
        content = {"data": data, "metadata": metadata or {}, "transient": transient or {}}
        send(state["parent"], "update_display_data" if update else "display_data", content)

    def clear_output(self, wait=False):
        if state["parent"] is not None:
            send(state["parent"], "clear_output", {"wait": wait})


class Shell(InteractiveShell):
    displayhook_class = Type(Hook)
    display_pub_class = Type(Publisher)

    def _showtraceback(self, etype, evalue, stb):
        if state["parent"] is None:
            return
        name = getattr(etype, "__name__", None) or str(etype)
        send(state["parent"], "error", {"ename": name, "evalue": str(evalue), "traceback": stb})

    def enable_gui(self, gui=None):
        pass  # no event loop to integrate with


def no_input(*args, **kwargs):
    """input() and getpass(), as ipykernel has them for a client that
    sends no input."""
    from IPython.core.error import StdinNotImplementedError

    raise StdinNotImplementedError("raw_input was called, but this frontend does not support input requests.")


def start():
    import builtins
    import getpass

    builtins.input = no_input
    getpass.getpass = no_input
    c = Config()
    # In-memory history: no sqlite file shared by the contexts.
    c.HistoryManager.enabled = False
    shell = Shell.instance(config=c)
    unstub()
    # The display formats E2B's SDKs read (e2b/chart, e2b/data), in a
    # namespace of their own.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "startup.py")
    with open(path) as f:
        exec(compile(f.read(), path, "exec"), {"__name__": "_sbx_startup"})
    # Startup files of the IPython profile, as ipykernel runs them.
    try:
        startup_dir = shell.profile_dir.startup_dir
        for f in sorted(os.listdir(startup_dir)):
            if f.endswith((".py", ".ipy")):
                state["parent"] = "startup"
                try:
                    if f.endswith(".ipy"):
                        shell.safe_execfile_ipy(os.path.join(startup_dir, f))
                    else:
                        shell.safe_execfile(os.path.join(startup_dir, f), shell.user_ns)
                finally:
                    state["parent"] = None
    except OSError:
        pass
    # One cell through every step a first cell takes (compile, run,
    # display hook, formatters), so that the first one the user runs does
    # not pay for what is imported and built on first use.
    state["parent"] = None
    shell.run_cell("None", store_history=False)
    shell.display_formatter.format(1)
    return shell


def run(shell, req):
    parent = req.get("id")
    code = req.get("code", "")
    env = req.get("env") or {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    state["n"] = state["dropped"] = 0
    state["parent"] = parent
    send(parent, "execute_input", {"code": code, "execution_count": shell.execution_count})
    try:
        state["running"] = True
        try:
            shell.run_cell(code, store_history=True)
        finally:
            state["running"] = False
    except KeyboardInterrupt:
        # Taken outside the user's code (IPython's own steps).
        send(parent, "error", {"ename": "KeyboardInterrupt", "evalue": "", "traceback": ["KeyboardInterrupt"]})
    except BaseException as e:  # noqa: BLE001 (the kernel goes on)
        send(parent, "error", {"ename": type(e).__name__, "evalue": str(e), "traceback": [repr(e)]})
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        drain_fds()
        if state["dropped"]:
            send(parent, "stream", {"name": "stderr", "text": "[sbx: output truncated: %d characters past the limit of %d per execution were dropped]\n" % (state["dropped"], output_limit)})
        state["parent"] = None
        send(parent, "status", {"execution_state": "idle"})


def main():
    shell = start()
    requests = os.fdopen(REQUESTS, "rb", buffering=1 << 16)
    send(None, "started", {})
    while True:
        try:
            line = requests.readline()
        except KeyboardInterrupt:
            continue
        if not line:
            os._exit(0)  # the server is gone
        try:
            req = json.loads(line)
        except ValueError as e:
            print("sbx kernel: bad request:", e, file=log)
            continue
        run(shell, req)


main()
