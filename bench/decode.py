"""Our greedy decode loop against transformers `generate(do_sample=False)`, same model/prompt/tokens.

Usage: python bench/decode.py [--model DIR] [--new-tokens 128] [--reps 5]
Without --model it builds a small random Llama (hidden 256, 4 layers) on the spot.
Prints a table, then one JSON line: ours_tok_s, hf_tok_s, ratio (ours / hf), model, new_tokens, same_tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Benchmarks run from a checkout: the tiny-model builder (tests/) and training/ are not installed with
# the package. Appended, so the installed `agent` (with agent.tools, agent.sessions) still comes first.
CHECKOUT = Path(__file__).resolve().parent.parent
sys.path += [str(CHECKOUT / "tests"), str(CHECKOUT)]

import torch

from agent.config import DecodeConfig
from agent.decoding.decode import decode
from agent.model.chat_format import prompt_token_ids
from agent.model.runtime import load_model
from tiny_model import build_tiny_llama


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: build a small random Llama)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()

    model_dir = args.model or build_tiny_llama(tempfile.mkdtemp(prefix="bench-llama-"), hidden=256, layers=4)
    lm = load_model(str(model_dir), device="cpu")
    ids = prompt_token_ids(lm.tokenizer, [{"role": "user", "content": "Tell me about the quick brown fox."}])
    config = DecodeConfig(max_new_tokens=args.new_tokens)
    prompt = torch.tensor([ids], device=lm.device)

    def ours() -> list[int]:
        return decode(lm, ids, config).token_ids

    def hf() -> list[int]:
        with torch.inference_mode():
            out = lm.model.generate(prompt, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                    do_sample=False, pad_token_id=lm.tokenizer.pad_token_id)
        return out[0, len(ids):].tolist()

    ours(), hf()  # warm-up
    times: dict[str, list[float]] = {"ours": [], "hf": []}
    same = True
    for _ in range(args.reps):
        for name, fn in (("ours", ours), ("hf", hf)):  # interleaved so drift hits both alike
            start = time.perf_counter()
            tokens = fn()
            times[name].append(time.perf_counter() - start)
            if name == "ours":
                ours_tokens = tokens
            else:
                same = same and tokens == ours_tokens
    ours_tok_s = args.new_tokens / statistics.median(times["ours"])
    hf_tok_s = args.new_tokens / statistics.median(times["hf"])
    print(f"| loop | tok/s (median of {args.reps}) |\n|---|---|\n"
          f"| ours | {ours_tok_s:.1f} |\n| hf generate | {hf_tok_s:.1f} |")
    print(json.dumps({
        "ours_tok_s": round(ours_tok_s, 2), "hf_tok_s": round(hf_tok_s, 2), "ratio": round(ours_tok_s / hf_tok_s, 3),
        "model": str(lm.model_id) if args.model else "random llama h256 l4 (built on the spot)",
        "new_tokens": args.new_tokens, "reps": args.reps, "same_tokens": same, "threads": torch.get_num_threads(),
    }))
    if not same:
        sys.exit("our greedy tokens differ from generate's")


if __name__ == "__main__":
    main()
