"""Runs one tool call safely: checked arguments, a timeout, a size cap, errors as results, a cache.

A tool runs in a worker process (`agent.tooling.worker`) that is killed at its timeout or on
Ctrl-C, so a hanging tool cannot hang the caller, keep running afterwards, or slow later turns;
only tools that opt in (`@tool(in_process=True)`), and every tool where processes cannot be forked,
run in the agent's own process (`agent.tooling.inprocess`), where they cannot be stopped. What a
tool prints goes into its record. Pure tools are cached by (name, arguments) for the runner's
life (one turn), timeouts included, which makes running them speculatively on search branches
cheap and runs a hanging one once, not once per branch. Tools with side effects run only after
`confirm(record)` says yes; without a confirm callback they are refused.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

from agent.grammar.islands import DEFAULT_RESULT_LIMIT, format_island
from agent.safe_text import valid_text
from agent.tooling.inprocess import run_in_process
from agent.tooling.outcome import Outcome
from agent.tooling.records import PendingCall, ToolCallRecord
from agent.tooling.registry import ToolRegistry
from agent.tooling.spec import FieldProblem, ToolSpec, check_fields
from agent.tooling.worker import can_fork, run_in_worker

Confirm = Callable[[ToolCallRecord], bool]

# Keep at most this many characters of a raw result before escaping and cutting (a tool may
# return megabytes; only `limit` characters reach the island anyway).
RAW_CAP_FACTOR = 4

NO_FORK_WARNING = ("tools run in the agent's own process on this platform (no os.fork): a tool that "
                   "times out cannot be stopped and keeps running")


class ArgumentError(ValueError):
    """A call's arguments do not match the tool's signature."""


def check_args(spec: ToolSpec, args: dict[str, Any]) -> dict[str, Any]:
    """Typed arguments for `spec` (ints become floats for float params); ArgumentError naming the problem."""
    try:
        return check_fields(spec.params, args)
    except FieldProblem as problem:
        if problem.kind == "unexpected":
            raise ArgumentError(f"{spec.name} has no argument {problem.name!r} (signature: {spec.call_signature})") \
                from None
        if problem.kind == "missing":
            raise ArgumentError(f"{spec.name}: missing required argument {problem.name!r} "
                                f"(signature: {spec.call_signature})") from None
        raise ArgumentError(f"{spec.name}: argument {problem.name!r}: {problem.detail}") from None


def _cache_key(name: str, args: dict[str, Any]) -> str:
    return name + "\x00" + json.dumps(args, sort_keys=True, ensure_ascii=False, default=str)


def execute(spec: ToolSpec, args: dict[str, Any], cap: int) -> Outcome:
    """Run the tool once, in a worker process where possible; results and errors cut to `cap` characters."""
    if spec.in_process:
        return run_in_process(spec.name, spec.func, args, spec.timeout, cap)
    if not can_fork():
        warnings.warn(NO_FORK_WARNING, RuntimeWarning, stacklevel=2)  # shown once per place by default
        return run_in_process(spec.name, spec.func, args, spec.timeout, cap)
    return run_in_worker(spec.name, spec.func, args, spec.timeout, cap)


class ToolRunner:
    """Executes calls against a registry. Shared by all branches of a search (the cache is shared)."""

    def __init__(self, registry: ToolRegistry, confirm: Confirm | None = None,
                 result_limit: int = DEFAULT_RESULT_LIMIT, cache: bool = True) -> None:
        self.registry = registry
        self.confirm = confirm
        self.result_limit = result_limit
        self.use_cache = cache
        self._cache: dict[str, tuple[str | None, str | None]] = {}
        self._lock = threading.Lock()
        self.executions = 0  # how many times a tool function was actually called

    def find(self, name: str) -> ToolSpec | None:
        """The registered tool of this name, or None."""
        return self.registry.get(name) if name in self.registry else None

    def refuse(self, call_text: str, error: str) -> ToolCallRecord:
        """The record (error island included) of a call that could not even be read."""
        record = ToolCallRecord(tool="?", args={}, result=None, error=error, seconds=0.0, call_text=call_text)
        record.island_text = format_island(None, error, self.result_limit)
        return record

    def defer(self, name: str, args: dict[str, Any], call_text: str) -> PendingCall:
        """A side-effect call on a speculative branch, not run (and not asked about) until `run_pending`."""
        record = ToolCallRecord(tool=name, args=args, result=None, error=None, seconds=0.0,
                                pure=False, speculative=True, call_text=call_text)
        return PendingCall(name, args, call_text, record)

    def run_pending(self, pending: PendingCall) -> ToolCallRecord:
        """Run a deferred call now (asking for confirmation) and fill its record in place."""
        done = self.run(pending.tool, pending.args, call_text=pending.call_text, speculative=False)
        record = pending.record
        record.__dict__.update(done.__dict__)
        return record

    def run(self, name: str, args: dict[str, Any], *, call_text: str = "", speculative: bool = False,
            confirmed: bool | None = None) -> ToolCallRecord:
        """Run one call and return its record (result or error, never raises for tool problems).

        `confirmed` skips asking for a side-effect tool (True: already confirmed).
        """
        start = time.perf_counter()
        record = ToolCallRecord(tool=name, args=dict(args), result=None, error=None, seconds=0.0,
                                call_text=call_text, speculative=speculative)
        try:
            spec = self.registry.get(name)
        except KeyError as exc:
            record.error = str(exc.args[0])
            return self._finish(record, start)
        record.pure = spec.pure
        try:
            typed = check_args(spec, args)
        except ArgumentError as exc:
            record.error = str(exc)
            return self._finish(record, start)

        key = _cache_key(name, typed)
        if spec.pure and self.use_cache:
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None:
                record.result, record.error = hit
                return self._finish(record, start)

        if not spec.pure and confirmed is not True:
            if self.confirm is None:
                record.error = (f"{name} has side effects and was not run: nobody confirmed it "
                                "(answer yes when asked, or pass --yes to allow side effects)")
                record.refused = True
                return self._finish(record, start)
            try:
                allowed = bool(self.confirm(record))
            except Exception as exc:  # a failing prompt must not run the tool
                allowed = False
                record.error = f"{name} was not run: asking for confirmation failed ({type(exc).__name__}: {exc})"
                record.refused = True
                return self._finish(record, start)
            start = time.perf_counter()  # the call's time is the tool's, not the person's time to answer
            if not allowed:
                record.error = f"{name} was not run: the user declined"
                record.refused = True
                return self._finish(record, start)

        self.executions += 1
        # cap > limit, so a cut raw result still ends in the island's truncation marker
        outcome = execute(spec, typed, max(self.result_limit, 1) * RAW_CAP_FACTOR)
        record.result, record.error, record.output = outcome.result, outcome.error, outcome.output
        # A timed-out pure call is cached too: under tree search a hanging tool then costs one
        # timeout per turn, not one per branch (a new turn has a new runner and tries again).
        if spec.pure and self.use_cache and outcome.cacheable:
            with self._lock:
                self._cache[key] = (record.result, record.error)
        return self._finish(record, start)

    def _finish(self, record: ToolCallRecord, start: float) -> ToolCallRecord:
        # Valid UTF-8 from here on: a lone surrogate in a result or message would otherwise make
        # the island unencodable and lose the turn when it is stored or shown.
        record.result = None if record.result is None else valid_text(record.result)
        record.error = None if record.error is None else valid_text(record.error)
        record.seconds = time.perf_counter() - start
        record.island_text = format_island(record.result, record.error, self.result_limit)
        return record
