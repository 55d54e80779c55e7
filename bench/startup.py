"""Start-up benchmark: how long until `agent run` shows the first piece of its answer, against
`python -c "import torch"` on the same machine, in the same run.

    python bench/startup.py [--reps 5] [--prompt "What is 1234 * 5678?"]

Each repetition runs the baseline and then `agent run PROMPT --no-save` (the shipped demo model,
greedy) as fresh processes, interleaved, and takes the time from the start of the process to the
first byte on its standard output (for the baseline: to its exit). A third command only imports
transformers' Llama modelling code (what loading the demo model needs before anything runs): the floor
of any start-up on transformers. Medians are compared as a ratio;
target (issue 17): ratio <= 2.0. The last line printed is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# What any answer from the demo model (a Llama) needs loaded before its first forward pass.
FLOOR_MODULE = "transformers.models.llama.modeling_llama"


def first_output_seconds(argv: list[str], env: dict[str, str]) -> float:
    """Seconds from starting `argv` to the first byte it writes to stdout (or to its exit, if it
    writes nothing); the process is then waited for."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert process.stdout is not None
    first = process.stdout.read(1)
    elapsed = time.perf_counter() - started
    process.stdout.read()
    code = process.wait()
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} exited with status {code}")
    return elapsed if first else time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions (median taken)")
    parser.add_argument("--prompt", default="What is 1234 * 5678?")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="agent-startup-")
    env = {**os.environ, "AGENT_HOME": home, "HF_HUB_OFFLINE": "1"}
    baseline_argv = [sys.executable, "-c", "import torch"]
    agent_argv = [sys.executable, "-m", "agent.cli", "run", args.prompt, "--no-save"]
    # the floor under any transformers runtime: importing the demo model's modelling code, nothing run
    floor_argv = [sys.executable, "-c", f"import {FLOOR_MODULE}"]
    first_output_seconds(agent_argv, env)  # warm the file cache once: both sides then read from memory
    baseline: list[float] = []
    floor: list[float] = []
    agent: list[float] = []
    for _ in range(args.reps):
        baseline.append(first_output_seconds(baseline_argv, env))
        floor.append(first_output_seconds(floor_argv, env))
        agent.append(first_output_seconds(agent_argv, env))
    base, low, ours = statistics.median(baseline), statistics.median(floor), statistics.median(agent)
    print(f"| command | median s | ratio | runs |\n|---|---|---|---|\n"
          f"| python -c \"import torch\" | {base:.2f} | 1.00 | {', '.join(f'{s:.2f}' for s in baseline)} |\n"
          f"| python -c \"import {FLOOR_MODULE}\" | {low:.2f} | {low / base:.2f} | "
          f"{', '.join(f'{s:.2f}' for s in floor)} |\n"
          f"| agent run (first token) | {ours:.2f} | {ours / base:.2f} | {', '.join(f'{s:.2f}' for s in agent)} |\n"
          f"ratio {ours / base:.2f} (target <= 2.0) on {platform.machine()} with {os.cpu_count()} CPUs")
    print(json.dumps({"bench": "startup", "import_torch_s": round(base, 3), "import_modelling_s": round(low, 3),
                      "first_token_s": round(ours, 3), "ratio": round(ours / base, 3),
                      "modelling_import_ratio": round(low / base, 3), "reps": args.reps}))


if __name__ == "__main__":
    main()
