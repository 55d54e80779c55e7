"""MODEL_CARD.md of the trained weights: data, model, training figures; the evaluation is filled in later."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from training.corpus import SHIPPED_EVERY, WORLD_DIALOGUES
from training.kb_docs import build_kb

EVAL_START, EVAL_END = "<!-- eval -->", "<!-- /eval -->"
RETRAIN = """```bash
python -m training.train --out agent/demo_model/weights --seed 0
python bench/demo_eval.py --model agent/demo_model/weights --write-card
```"""


def stages_of(figures: dict[str, Any]) -> list[dict[str, Any]]:
    """The training runs that made the weights, oldest first (each fine-tune names what it started from)."""
    chain = []
    current: dict[str, Any] | None = figures
    while current:
        chain.append(current)
        current = (current.get("started_from") or {}).get("training")
    return chain[::-1]


def _run_line(figures: dict[str, Any]) -> str:
    cfg = figures.get("config", {})
    return (f'AdamW (lr {cfg.get("lr", "?")}, warm-up {cfg.get("warmup", "?")} steps, cosine decay to '
            f'{cfg.get("min_lr_ratio", "?")} of it, by step count), batch {cfg.get("batch_size", "?")} dialogues, '
            f'{figures.get("steps", "?")} steps: {figures.get("train_minutes", "?")} minutes on '
            f'{figures.get("device", "?")} (torch {figures.get("torch", "?")}) after the data is made, '
            f'{figures.get("tokens_seen", "?")} tokens seen; '
            f'final training loss {figures.get("final_loss_ema", "?")}; last weights sha256 '
            f'{(list(figures.get("weights_sha256", {}).values()) or ["?"])[-1]}.')


def training_section(figures: dict[str, Any]) -> str:
    """How the weights were made: one run from scratch, or a run from scratch and fine-tunes of it."""
    stages = stages_of(figures)
    if len(stages) == 1:
        return f"""One seeded run:

{RETRAIN}

{_run_line(figures)}"""
    lines = [f"{len(stages)} stages; STAGE1 is a directory holding the first stage's weights: the corpus code",
             "of that stage is the one of the commit that shipped them, and they are in git's history",
             "(`git log -- agent/demo_model/weights`). Each later stage fine-tunes the one before on the",
             "corpus of its own commit (its phrasing variations are `training/variations.py`), with another",
             "seed, so other worlds, names and numbers.", "",
             f"1. From scratch, seed {stages[0].get('seed', '?')}, {stages[0].get('dialogues', '?')} dialogues. "
             + _run_line(stages[0])]
    commands = []
    for number, stage in enumerate(stages[1:], start=2):
        cfg = stage["config"]
        lines.append(f"{number}. Fine-tune of stage {number - 1}, seed {stage['seed']}, {cfg['dialogues']} dialogues. "
                     + _run_line(stage))
        out = "agent/demo_model/weights" if number == len(stages) else f"STAGE{number}"
        commands.append(f"python -m training.train --init STAGE{number - 1} --out {out} --seed {stage['seed']} "
                        f"--steps {cfg['steps']} --dialogues {cfg['dialogues']} --lr {cfg['lr']} "
                        f"--warmup {cfg['warmup']} --threads {cfg['threads']}")
    commands.append("python bench/demo_eval.py --model agent/demo_model/weights --write-card")
    return "\n".join(lines) + "\n\n```bash\n" + "\n".join(commands) + "\n```\n"


def write_model_card(out: Path, figures: dict[str, Any], evaluation: str | None = None) -> Path:
    """MODEL_CARD.md: data, size, training time, evaluation figures (filled by bench/demo_eval.py), limits."""
    cfg = figures["config"]
    card = out / "MODEL_CARD.md"
    if evaluation is None and card.is_file():
        old = card.read_text()
        if EVAL_START in old and EVAL_END in old:
            evaluation = old.split(EVAL_START, 1)[1].split(EVAL_END, 1)[0].strip()
    evaluation = evaluation or "Not measured yet: run `python bench/demo_eval.py --write-card`."
    worlds = math.ceil(cfg["dialogues"] / WORLD_DIALOGUES)
    model = (f'hidden {cfg["hidden_size"]}, {cfg["layers"]} layers, {cfg["heads"]} heads, '
             f'MLP {cfg["intermediate_size"]}')
    text = f"""# agent demo model

A small Llama-architecture causal LM trained from scratch by this project, so that the shell works
offline out of the box. It speaks the project's tool-call protocol (README.md): it answers
arithmetic through `CALL(calc, expr="...")`, questions about its knowledge base through
`SEARCH("name")`, opens documents with `LOAD(id)`, and says "I don't know" when the search finds
nothing. It knows nothing by itself: every fact comes from a tool's island.

## Data
- Knowledge base: {len(build_kb().entities)} generated documents about invented countries, cities, people, elements,
  companies, mountains and lakes (`agent/demo_model/kb/docs.jsonl`, made by
  `training/kb_docs.py`); 15% of the entities of each kind are held out of training.
- Dialogues: {figures["dialogues"]} generated dialogues (`training/corpus.py`, seed {figures["seed"]}) with
  1-3 exchanges: arithmetic (numbers of 1-6 digits, + - * / ** %, parentheses, words), facts,
  "tell me about", unknown names (`no results` -> "I don't know"), LOAD by id and as a follow-up,
  follow-up questions, notes and small talk. Islands come from the real tools.
- Phrasings: each relation is asked directly ("How high is X?"), by its noun ("Give me the height
  of X.") and indirectly ("I wonder how high X is."); a quarter of the questions come with a
  greeting or thanks around them. The evaluation's phrasings occur nowhere in training (a test
  checks it); these families were added after an evaluation showed answers falling back to a
  document's first sentence for phrasings unlike training's.
- Written another way (`training/variations.py`): arithmetic as a verb ("multiply 312 by 19") or
  a word problem ("I have 12 bags with 30 cups in each..."), numbers in words ("nine hundred"),
  questions typed in a hurry (lowercase, a typo; the call copies the name as written), and a
  name mentioned before a question that says "its". Added after a set of fresh phrasings
  (bench/fresh_phrasings.jsonl) showed the model searching for made-up names there.
- Worlds: the dialogues are spread over {worlds} knowledge bases of the same shape, {WORLD_DIALOGUES} dialogues
  each: freshly invented ones (no word of the shipped knowledge base) and, every {SHIPPED_EVERY}th, the shipped
  one without its held-out entities. A name or number is almost never seen twice, so the model
  cannot memorise facts: it learns to copy the name into SEARCH and the fact out of the island.
- {figures["corpus_tokens"]} tokens; {figures["loss_tokens"]} of them are the assistant's own text and end token (loss
  weight 1), island tokens have weight {cfg["island_weight"]} (an auxiliary copying task: the shell writes
  islands, the model never has to), prompts have none.

## Model
- LlamaForCausalLM: {model},
  context {cfg["max_len"]} tokens, tied embeddings: {figures["parameters"] / 1e6:.2f}M parameters (float32).
- Tokenizer: byte-level BPE trained with `tokenizers`, {figures["vocab_size"]} tokens, digits one per token;
  chat template `<|system|>` / `<|user|>` / `<|assistant|>`, each turn ending with `<|end|>` (the EOS).

## Training
{training_section(figures)}
The run is deterministic on a given device and torch version (on CUDA: deterministic kernels,
eager attention, no TF32): `training.json` holds the weights' sha256 every {cfg["checksum_every"]} steps, so a
rerun can be compared checkpoint by checkpoint. Another device rounds differently; the
evaluation figures of such a rerun should still agree within a couple of points.
The recipe needs a GPU: making the data takes about 1.5 minutes on 16 cores, and on the 2-core
CPU one training step takes about 8.8 s (1 thread), so the 3750 steps would take about 9 hours;
the `--minutes` guard (60 by default) stops such a run early, and it says so.

## Evaluation (bench/demo_eval.py: held-out templates, values and entities)
{EVAL_START}
{evaluation}
{EVAL_END}

## Limits
- It only knows the protocol and the shapes of question it was trained on; free conversation is
  a handful of canned replies.
- Facts come only from the knowledge base; the search query is the name in the question, so a
  question without a name (e.g. "who invented the radio?") is not answered well.
- Copying is learned, not exact: long numbers and unseen names are sometimes miscopied, and for a
  question phrased unlike its training templates it may state another sentence of the right
  document (or a value it guesses) instead of the one asked for; see the evaluation above.
  Flag colours, jobs, products and inventions come from short fixed lists, so a guess looks
  plausible (a flag "red" where the island says "golden").
- Long results push old turns out of its {cfg["max_len"]}-token context; it was trained on 1-3 exchanges.
- The system prompt it was trained on is the one for the built-in tools; custom tools are listed
  but the model was never trained to call them.
"""
    card.write_text(text)
    return card
