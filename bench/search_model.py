"""A small trained model for bench/search.py when the shipped demo model is absent.

build_tiny_llama gives random weights, whose next-token distributions are nearly flat: every
strategy would score the same. A couple of minutes of training on templated chat dialogues gives
the model peaked, structured distributions, which is what a search is meant to exploit.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch

SUBJECTS = ["France", "Japan", "Peru", "Kenya", "Norway", "Chile", "Egypt", "Canada", "India", "Spain"]
CAPITALS = ["Paris", "Tokyo", "Lima", "Nairobi", "Oslo", "Santiago", "Cairo", "Ottawa", "Delhi", "Madrid"]
TOPICS = ["the weather", "python", "the fox", "numbers", "the dog", "search", "tools", "errors"]


def dialogues(seed: int = 0, count: int = 1200) -> list[tuple[str, str]]:
    """(user, assistant) pairs in a few templates, some with tool calls and islands."""
    rng = random.Random(seed)
    out: list[tuple[str, str]] = []
    for _ in range(count):
        i = rng.randrange(len(SUBJECTS))
        a, b = rng.randrange(2, 20), rng.randrange(2, 20)
        topic = rng.choice(TOPICS)
        kind = rng.randrange(5)
        if kind == 0:
            out.append((f"What is the capital of {SUBJECTS[i]}?",
                        f"The capital of {SUBJECTS[i]} is {CAPITALS[i]}."))
        elif kind == 1:
            answer = (f'SEARCH("capital of {SUBJECTS[i]}")\n=> [{i}] {SUBJECTS[i]}: The capital of '
                      f"{SUBJECTS[i]} is {CAPITALS[i]}.\nThe capital is {CAPITALS[i]}.")
            out.append((f"capital of {SUBJECTS[i]}", answer))
        elif kind == 2:
            out.append((f"What is {a} * {b}?", f'CALL(calc, expr="{a} * {b}")\n=> {a * b}\nThe answer is {a * b}.'))
        elif kind == 3:
            out.append((f"Tell me about {topic}.",
                        rng.choice([f"I am fine, thank you. {topic.capitalize()} is nice today.",
                                    f"Hello there. What is {topic} like?",
                                    f"The quick brown fox jumps over the lazy dog, and {topic} is fine."])))
        else:
            out.append((f"hello, how are you? ({topic})",
                        rng.choice(["I am fine, thank you. How are you today?",
                                    "hello there, how are you today? I am fine.",
                                    "yes, I am fine. What is the weather like?"])))
    return out


def build_bench_model(out_dir: Path, seed: int = 0, steps: int = 600) -> Path:
    """Build (once) and train a tiny Llama on the templated dialogues; returns its directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tiny_model import build_tiny_llama

    out_dir = Path(out_dir)
    if (out_dir / "trained.ok").exists():
        return out_dir
    build_tiny_llama(out_dir, seed=seed, hidden=96, layers=3)
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": u}, {"role": "assistant", "content": a}],
                                           tokenize=False) for u, a in dialogues(seed)]
    encoded = [tokenizer.encode(t)[:96] for t in texts]
    torch.manual_seed(seed)
    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    model.train()
    for step in range(steps):
        batch = rng.sample(encoded, 24)
        width = max(len(b) for b in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        for row, seq in enumerate(batch):
            ids[row, : len(seq)] = torch.tensor(seq)
            labels[row, : len(seq)] = torch.tensor(seq)
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for group in optimizer.param_groups:
            group["lr"] = 3e-3 * (1 - step / steps) + 1e-4
    model.eval()
    model.save_pretrained(out_dir)
    (out_dir / "trained.ok").write_text(f"steps={steps} final_loss={float(loss):.3f}\n")
    return out_dir
