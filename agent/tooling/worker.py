"""Runs one tool call in a forked worker process that is killed at the timeout.

A thread cannot be stopped, and a tool that keeps the GIL (a backtracking regex, one huge integer
operation) even stops the waiting caller from noticing its timeout. A process can be killed: the
agent waits on a pipe (no GIL needed in the child), and at the timeout, on Ctrl-C or on any other
exception it kills the worker's whole process group, so a timed-out tool can never write anything
afterwards and leaves nothing running to slow later turns.

The worker is a fork of the agent: the tool function, its module and the arguments are already
there (no pickling, works for tools loaded from `--tools` files). It is not a sandbox: the tool has
the user's permissions. In the child, stdin is /dev/null and stdout/stderr (file descriptors 1 and
2, so C code and subprocesses too) go to a temporary file that the agent reads into the record.
Only text comes back: a length-prefixed JSON message with the result or the error.

Where `os.fork` does not exist (Windows), `can_fork()` is False and the runner falls back to
running tools in-process (`agent.tooling.inprocess`), which cannot stop them.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import IO, Any

from agent.tooling.outcome import OUTPUT_LIMIT, Outcome, call_tool, cut_output

HEADER = 8  # bytes of the message length that precede the JSON message


def can_fork() -> bool:
    """Whether tools can run in killable worker processes here (POSIX: yes; Windows: no)."""
    return hasattr(os, "fork") and hasattr(os, "killpg")


def run_in_worker(name: str, func: Callable[..., Any], kwargs: dict[str, Any], timeout: float,
                  cap: int) -> Outcome:
    """Run `func(**kwargs)` in a forked child; after `timeout` seconds kill it and report the timeout.

    KeyboardInterrupt (Ctrl-C) while waiting kills the child too, then propagates.
    """
    deadline = time.monotonic() + timeout  # from the call's start: forking a large process takes time too
    read_fd, write_fd = os.pipe()
    parent = os.getpid()
    with tempfile.TemporaryFile() as output:
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns that forking a multi-threaded process may deadlock the child: the
                # child here only runs the tool, and a child that deadlocks is killed at the timeout.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError as exc:  # e.g. EAGAIN: too many processes; the call fails, not the turn
            os.close(read_fd)
            os.close(write_fd)
            return Outcome(error=f"{name} could not start a worker process: {exc}", cacheable=False)
        if pid == 0:
            _child(name, func, kwargs, cap, (read_fd, write_fd), output, parent)  # never returns
        os.close(write_fd)
        reaped = False
        try:
            with contextlib.suppress(OSError):  # the child may already have done it, or be gone
                os.setpgid(pid, pid)  # also here: no window in which killpg misses the child
            message, complete = _read_message(read_fd, deadline)
            if not complete:
                _kill(pid)
            status = os.waitpid(pid, 0)[1]
            reaped = True
        finally:
            os.close(read_fd)
            if not reaped:  # Ctrl-C or another exception while waiting: stop the tool first
                _kill(pid)
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, 0)
        printed = _printed(output)
    if not complete:
        if message is None:  # the deadline passed
            return Outcome(error=f"{name} timed out after {timeout:g} s", output=printed)
        return Outcome(error=f"{name} {_ending(status)} without returning a result", output=printed,
                       cacheable=False)
    outcome = Outcome(**json.loads(message))
    outcome.output = printed
    return outcome


def _read_message(fd: int, deadline: float) -> tuple[bytes | None, bool]:
    """(message, complete) from the child: (None, False) at the deadline, (b"", False) at an early end."""
    data = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None, False
            if not selector.select(remaining):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the child ended (or closed the pipe) before sending everything
                return b"", False
            data += chunk
            if len(data) >= HEADER:
                size = int.from_bytes(data[:HEADER], "big")
                # stop at the message's end: a grandchild holding the pipe open must not keep us waiting
                if len(data) >= HEADER + size:
                    return bytes(data[HEADER:HEADER + size]), True


def _kill(pid: int) -> None:
    """SIGKILL the worker's process group (the tool's own subprocesses too), else the worker."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _ending(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        try:
            return f"was killed by signal {number} ({signal.Signals(number).name})"
        except ValueError:
            return f"was killed by signal {number}"
    return f"ended its process (exit status {os.waitstatus_to_exitcode(status)})"


def _printed(output: IO[bytes]) -> str:
    output.seek(0)
    # enough bytes for OUTPUT_LIMIT characters of up to 4 bytes each, and one more to show the cut
    return cut_output(output.read(4 * OUTPUT_LIMIT + 4).decode("utf-8", "replace"))


def _child(name: str, func: Callable[..., Any], kwargs: dict[str, Any], cap: int, pipe: tuple[int, int],
           output: IO[bytes], parent: int) -> None:
    """The worker: run the tool, send the outcome, exit without running any of the agent's exit code."""
    code = 70  # the exit status if anything before the message fails (the agent reports it)
    try:
        with contextlib.suppress(Exception):
            # Ctrl-C goes to the agent, which kills this process; the terminal's signal must not
            # reach us in the moment before we have our own process group.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        os.setpgid(0, 0)
        # now out of the terminal's reach: the tool's own subprocesses get the usual Ctrl-C handling
        with contextlib.suppress(Exception):
            signal.signal(signal.SIGINT, signal.default_int_handler)
        _die_with_parent()
        if os.getppid() != parent:  # the agent died before the line above took effect
            return
        read_fd, write_fd = pipe
        os.close(read_fd)
        _redirect(output.fileno())
        outcome = call_tool(name, func, kwargs, cap)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        body = json.dumps({"result": outcome.result, "error": outcome.error, "cacheable": outcome.cacheable},
                          ensure_ascii=True).encode("ascii")  # ASCII: lone surrogates travel as \udXXX escapes
        data = len(body).to_bytes(HEADER, "big") + body
        while data:
            data = data[os.write(write_fd, data):]
        code = 0
    finally:
        os._exit(code)  # no atexit handlers, no flushing of the agent's buffers copied into this process


def _redirect(fd: int) -> None:
    """stdin from /dev/null; file descriptors 1 and 2 (and new sys.stdout/stderr objects) to `fd`.

    The agent's own sys.stdout object, copied by the fork, may hold unwritten output: it is left
    alone (never flushed, as the child ends with os._exit) so that nothing is written twice.
    """
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - lives until the child exits
    sys.stdout = open(1, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)  # noqa: SIM115


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker if the agent dies (e.g. SIGKILL) while it runs."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        # ctypes only here: the prctl call exists on Linux alone, and only a worker needs it
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
