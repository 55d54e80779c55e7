"""Session store benchmark: turn write time, replay-render time, bytes per turn.

    python bench/store.py [--turns 200] [--candidates 1000] [--render-turns 1000]

1. write: one turn with N candidates (`start_turn` with the question, then `finish_turn` with the
   answer, its record, 1
   tool call and N candidates), p50 / p99 over --turns turns, against the naive baseline in the
   same run: the same rows written with sqlite-utils one row per commit (one row per candidate).
2. render: `agent.render.render_session` of a session of --render-turns turns (island, tool call,
   8 candidates each) into a 100-column console, median of 5, against the naive baseline:
   one query per turn and a rich Panel per message.
3. bytes per turn: file size (after the final checkpoint) divided by turns, for both sessions.

Targets (issue 4): write p99 < 20 ms with 1000 candidates; render 1000 turns < 1 s.
The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text
from sqlite_utils import Database

from agent.render import render_session
from agent.sessions.records import AnswerRecord
from agent.sessions.store import SessionStore

WORDS = ("the capital of France is Paris and the search result says that it has been since the "
         "tenth century which we can LOAD for more detail about rivers bridges and museums").split()


def candidate_texts(rng: random.Random, n: int) -> list[str]:
    """Varied candidate responses of ~40 words (~200 characters, ~50 tokens)."""
    return [" ".join(rng.choice(WORDS) for _ in range(40)) for _ in range(n)]


def candidates(texts: list[str], rng: random.Random) -> list[dict]:
    return [
        {"text": t, "score": -rng.uniform(0.5, 3.0), "token_count": 50, "strategy": "tree",
         "parent": None if i < 8 else rng.randrange(i), "refined": i % 4 == 0,
         "score_before": -2.0 if i % 4 == 0 else None, "score_after": -1.9 if i % 4 == 0 else None,
         "grad_steps": 8 if i % 4 == 0 else None, "accepted": (i % 8 == 0) if i % 4 == 0 else None,
         "chosen": i == 0}
        for i, t in enumerate(texts)
    ]


TOOL_CALL = {"tool": "search", "args": {"query": "capital of France"},
             "result": "[3] France: The capital of France is Paris.", "error": None, "seconds": 0.004,
             "pure": True, "speculative": False, "call_text": 'SEARCH("capital of France")'}
REPLY = 'SEARCH("capital of France")\n=> [3] France: The capital of France is Paris.\nThe capital of France is Paris.'
CONFIG = {"strategy": "tree", "seed": 0, "temperature": 0.8, "budget": 64, "temperatures": [1.5, 1.0, 0.5],
          "grammar_hash": "0123456789abcdef", "max_new_tokens": 256}


def write_turn(store: SessionStore, sid: str, turn: int, cands: list[dict]) -> None:
    """What a turn writes in the shell: the question, then the answer with its record in one transaction."""
    turn = store.start_turn(sid, f"question {turn}: what is the capital of France?")
    store.finish_turn(sid, turn, AnswerRecord(
        text=REPLY, config=CONFIG, tool_calls=[TOOL_CALL], candidates=cands,
        timings={"total": 1.0, "search": 0.8}, token_counts={"new_tokens": 20, "forward_passes": 64}))


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def bench_write(tmp: Path, turns: int, n_cands: int, rng: random.Random) -> dict:
    path = tmp / "write.sqlite"
    texts = candidate_texts(rng, n_cands)
    cands = candidates(texts, rng)
    ours: list[float] = []
    cpu: list[float] = []  # this thread's CPU time: the store's own cost, without waiting for a core
    with SessionStore.open(path) as store:
        sid = store.create_session("bench-model", "sha256:0")
        for t in range(1, 6):  # warm-up
            write_turn(store, sid, t, cands)
        for t in range(6, 6 + turns):
            start, start_cpu = time.perf_counter(), time.thread_time()
            write_turn(store, sid, t, cands)
            ours.append((time.perf_counter() - start) * 1000)
            cpu.append((time.thread_time() - start_cpu) * 1000)
    size = path.stat().st_size

    # baseline: the obvious code - sqlite-utils inserts, every row its own commit
    base_path = tmp / "naive.sqlite"
    with SessionStore.open(base_path) as store:  # same schema and pragmas
        sid = store.create_session("bench-model", "sha256:0")
    db = Database(base_path)
    db.execute("PRAGMA synchronous = NORMAL")
    # the obvious schema: one row per candidate (the store packs a turn's candidates into one row)
    db.table("naive_candidates").create({"id": int, "turn_id": int, "session_id": str, "turn": int, "idx": int,
                                         "text": str, "score": float}, pk="id",
                                        foreign_keys=[("turn_id", "turns", "id")])
    db.table("naive_candidates").create_index(["turn_id"])
    naive: list[float] = []
    base_turns = max(5, turns // 20)
    for t in range(1, base_turns + 1):
        start = time.perf_counter()
        db.table("messages").insert({"session_id": sid, "turn": t, "role": "user", "text": "q",
                                     "created": "2026-01-01", "interrupted": 0})
        db.table("messages").insert({"session_id": sid, "turn": t, "role": "assistant", "text": REPLY,
                                     "created": "2026-01-01", "interrupted": 0})
        turn_id = db.table("turns").insert({"session_id": sid, "turn": t, "created": "2026-01-01",
                                            "config": json.dumps(CONFIG)}).last_pk
        db.table("tool_calls").insert({"turn_id": turn_id, "session_id": sid, "turn": t, "idx": 0,
                                       "tool": "search", "args": "{}"})
        for i, c in enumerate(cands):
            db.table("naive_candidates").insert({"turn_id": turn_id, "session_id": sid, "turn": t, "idx": i,
                                           "text": c["text"], "score": c["score"]})
        naive.append((time.perf_counter() - start) * 1000)
    db.close()
    return {
        "write_p50_ms": round(pct(ours, 0.5), 2),
        "write_p99_ms": round(pct(ours, 0.99), 2),
        "write_max_ms": round(max(ours), 2),
        "write_cpu_p50_ms": round(pct(cpu, 0.5), 2),
        "write_cpu_p99_ms": round(pct(cpu, 0.99), 2),
        "naive_write_p50_ms": round(pct(naive, 0.5), 1),
        "write_speedup_vs_naive": round(pct(naive, 0.5) / pct(ours, 0.5), 1),
        "bytes_per_turn_1000_candidates": size // (turns + 5),
        "write_turns": turns,
        "naive_turns": base_turns,
    }


def naive_render(store: SessionStore, sid: str, console: Console) -> None:
    """Baseline: one query per turn, a Panel per message."""
    turns = [r["turn"] for r in store.db.query(
        "SELECT DISTINCT turn FROM messages WHERE session_id = ? ORDER BY turn", (sid,))]
    for t in turns:
        rows = store.db.query("SELECT role, text FROM messages WHERE session_id = ? AND turn = ? ORDER BY id",
                              (sid, t))
        calls = store.db.query("SELECT tool, args, result FROM tool_calls WHERE session_id = ? AND turn = ?",
                               (sid, t))
        console.print(Group(*[Panel(Text(r["text"]), title=r["role"]) for r in rows],
                            *[Text(f"tool call: {c['tool']}({c['args']}) -> {c['result']}") for c in calls]))


def bench_render(tmp: Path, turns: int, rng: random.Random) -> dict:
    path = tmp / "render.sqlite"
    texts = candidate_texts(rng, 8)
    cands = candidates(texts, rng)
    with SessionStore.open(path) as store:
        sid = store.create_session("bench-model", "sha256:0")
        store.add_message(sid, 0, "system", "You are a helpful assistant with tools.")
        for t in range(1, turns + 1):
            write_turn(store, sid, t, cands)
    size = path.stat().st_size
    ours: list[float] = []
    naive: list[float] = []
    with SessionStore.open(path) as store:
        for _ in range(5):
            for name, fn, out in (("ours", render_session, ours), ("naive", naive_render, naive)):
                console = Console(file=io.StringIO(), width=100, force_terminal=True, color_system="standard")
                start = time.perf_counter()
                fn(store, sid, console)
                out.append(time.perf_counter() - start)
                if name == "ours":
                    rendered = console.file.getvalue()
    assert rendered.count("── turn ") == turns and rendered.count("tool call: search") == turns
    return {
        "render_turns": turns,
        "render_s": round(statistics.median(ours), 3),
        "naive_render_s": round(statistics.median(naive), 3),
        "render_speedup_vs_naive": round(statistics.median(naive) / statistics.median(ours), 1),
        "bytes_per_turn_8_candidates": size // turns,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200, help="turns timed for the write figure")
    parser.add_argument("--candidates", type=int, default=1000, help="candidates per written turn")
    parser.add_argument("--render-turns", type=int, default=1000, help="turns of the rendered session")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        result = {"candidates": args.candidates, **bench_write(tmp, args.turns, args.candidates, rng),
                  **bench_render(tmp, args.render_turns, rng)}
    result["machine"] = f"{os.cpu_count()}-core CPU, {sys.platform}, python {sys.version.split()[0]}"
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine inflates the tail
    result["targets_met"] = result["write_p99_ms"] < 20 and result["render_s"] < 1.0
    print(f"write one turn with {args.candidates} candidates: p50 {result['write_p50_ms']} ms, "
          f"p99 {result['write_p99_ms']} ms wall, CPU p50 {result['write_cpu_p50_ms']} / p99 "
          f"{result['write_cpu_p99_ms']} ms (naive per-row commits p50 {result['naive_write_p50_ms']} ms, "
          f"x{result['write_speedup_vs_naive']})")
    print(f"render {args.render_turns} turns: {result['render_s']} s (naive {result['naive_render_s']} s, "
          f"x{result['render_speedup_vs_naive']})")
    print(f"bytes per turn: {result['bytes_per_turn_1000_candidates']} (1000 candidates), "
          f"{result['bytes_per_turn_8_candidates']} (8 candidates)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
