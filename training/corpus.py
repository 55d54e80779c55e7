"""Dialogue generator for the demo model: the project's chat format and tool-call protocol (seeded).

A dialogue is the system prompt (the built-in tools), then 1-3 exchanges. Each assistant turn is
a list of segments (text, is_island): the model's own text and the hard islands the shell writes
after a call's `)`. Islands come from the real tools (`agent.tools.search/load/calc`) run over the
shipped knowledge base, formatted as README.md says (`\\n=> RESULT\\n`).

Kinds of exchange: arithmetic through `CALL(calc, expr="...")` answered with the island's number;
facts through `SEARCH("<name>")` answered with the island's sentence; `LOAD(id)` for documents
and follow-ups; chat that needs no tool; "I don't know" when the search finds `no results`;
notes through `CALL(note, text="...")`.

`split="train"` uses the training templates, values and the non-held-out entities;
`split="eval"` uses other templates, other values and the held-out entities (bench/demo_eval.py).
"""

from __future__ import annotations

import functools
import random
import sys

from agent.grammar.islands import format_island
from agent.tooling.spec import ToolFailure
from agent.tools.calc import calc
from agent.tools.load import load
from agent.tools.search import search
from training.dialogue import Dialogue, Exchange
from training.kb_docs import KB_SEED, Entity, KnowledgeBase, NameMaker, build_kb
from training.phrasings import (
    ABOUT_EVAL,
    ABOUT_TRAIN,
    CALC_EVAL,
    CALC_FOLLOW_TRAIN,
    CALC_TRAIN,
    CHAT,
    FACT_EVAL,
    FACT_FOLLOW_TRAIN,
    FACT_TRAIN,
    LOAD_FOLLOW_TRAIN,
    LOAD_TRAIN,
    NOTE_TEXTS,
    NOTE_TRAIN,
    SYMBOL_OPS,
    UNKNOWN_REAL,
    WORD_OPS_TRAIN,
    WRAP_SHARE,
    WRAP_TRAIN,
)
from training.pool import worker_pool
from training.variations import EMBED_TRAIN, careless, spoken_expr, verb_question, word_problem
from training.worlds import kb_world, system_prompt, training_world


class CorpusGenerator:
    """Seeded dialogues; call inside `kb_world(kb)` so SEARCH/LOAD read this knowledge base."""

    def __init__(self, kb: KnowledgeBase, seed: int | str, split: str = "train", system: str | None = None,
                 avoid: set[str] | None = None) -> None:
        if split not in ("train", "eval"):
            raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
        self.kb = kb
        self.split = split
        self.rng = random.Random(f"{split}:{seed}")
        self.system = system if system is not None else system_prompt()
        held = split == "eval"
        self.entities = [e for e in kb.entities if e.held_out == held]
        self.held_ids = {e.id for e in kb.entities if e.held_out}
        # Unknown names: eval and train draw from disjoint generators.
        self.unknown = NameMaker(random.Random(f"unknown:{split}:{seed}"), taken=kb.name_words() | (avoid or set()))
        self._tools = {"calc": calc, "load": load, "search": search}

    # -- tools (the real ones; errors become `error: <message>` as the shell writes them)
    def run_tool(self, name: str, arg: object) -> str:
        fn = self._tools[name]
        try:
            return str(fn(arg))
        except ToolFailure as exc:
            return f"error: {exc}"

    def _wrap(self, question: str) -> str:
        """Training questions sometimes come with a greeting or thanks around them."""
        if self.split != "train" or self.rng.random() >= WRAP_SHARE:
            return question
        return self.rng.choice(WRAP_TRAIN).format(q=question)

    def _hurried(self, question: str, name: str = "") -> tuple[str, str]:
        """(question, name) as typed in a hurry now and then (training only): lowercase, maybe a typo.

        The name comes back as the user wrote it, since the call copies it (the search ignores case).
        """
        if self.split != "train" or self.rng.random() >= CARELESS_SHARE:
            return question, name
        return careless(question, name, self.rng), name.lower()

    # -- arithmetic
    def _number(self) -> str:
        r = self.rng
        digits = r.choice([1, 2, 3, 3, 4, 4, 5, 5, 6, 6]) if self.split == "train" else r.choice([1, 2, 3, 4, 5, 6])
        n = r.randint(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits - 1)
        if r.random() < 0.06:
            return f"{n}.{r.randint(1, 99)}"
        return str(n)

    def _expr(self) -> tuple[str, str]:
        """(expression as the call writes it, the same as the user writes it).

        The call keeps the user's numbers, spacing and parentheses and only turns words and the
        symbols calc lacks (x, ^) into its operators, so writing the call is mostly copying.
        """
        r = self.rng
        shape = r.random()
        ops = ["+", "-", "*", "/"]
        op1 = r.choice(ops + (["**", "%"] if r.random() < 0.15 else []))
        a, b = self._number(), self._number()
        if op1 == "**":
            a, b = str(r.randint(2, 30)), str(r.randint(2, 5))
        style = r.random()
        if shape < 0.65 or op1 == "**":
            if style < 0.35:
                return f"{a} {op1} {b}", f"{a} {r.choice(WORD_OPS_TRAIN[op1])} {b}"
            shown_op = r.choice(SYMBOL_OPS[op1])
            gap = "" if style < 0.5 else " "
            return f"{a}{gap}{op1}{gap}{b}", f"{a}{gap}{shown_op}{gap}{b}"
        op2 = r.choice(ops)
        c = self._number()
        if shape < 0.85:
            expr = f"{a} {op1} {b} {op2} {c}"
        elif shape < 0.93:
            expr = f"({a} {op1} {b}) {op2} {c}"
        else:
            expr = f"{a} {op1} ({b} {op2} {c})"
        if style < 0.2:
            expr = expr.replace(" ", "")
        return expr, expr

    def calc_exchange(self) -> Exchange:
        r = self.rng
        kind = r.random() if self.split == "train" else 1.0
        if kind < VERB_SHARE:
            question, expr = verb_question(r, self._number)
        elif kind < VERB_SHARE + STORY_SHARE:
            question, expr = word_problem(r)
        elif kind < VERB_SHARE + STORY_SHARE + WORDS_SHARE:
            # numbers in words; not typed in a hurry too: a misspelt number word is another number
            expr, shown = spoken_expr(r)
            question = r.choice(CALC_TRAIN).format(q=shown)
            return self._calc_answer(self._wrap(question), expr, {"kind": "calc"})
        else:
            expr, shown = self._expr()
            templates = CALC_TRAIN if self.split == "train" else CALC_EVAL
            question = r.choice(templates).format(q=shown)
        return self._calc_answer(self._wrap(self._hurried(question)[0]), expr, {"kind": "calc"})

    def _calc_answer(self, user: str, expr: str, meta: dict) -> Exchange:
        result = self.run_tool("calc", expr)
        if result.startswith("error: "):
            answer = f"I can't compute that: {result[len('error: '):]}."
        else:
            answer = f"The answer is {result}."
        meta = {**meta, "tool": "calc", "expr": expr, "expected": result}
        call = f'CALL(calc, expr="{expr}")'
        return Exchange(user, [(call, False), (format_island(result), True), (answer, False)], meta)

    def calc_follow(self, prev: Exchange) -> Exchange | None:
        value = prev.meta.get("expected", "")
        if not value or value.startswith("error") or "e" in value:
            return None
        template, op = self.rng.choice(CALC_FOLLOW_TRAIN)
        n = self._number()
        return self._calc_answer(template.format(n=n), f"{value} {op} {n}", {"kind": "calc-follow"})

    # -- facts
    def _ask(self, entity: Entity, relation: str, user: str, kind: str, query: str = "") -> Exchange:
        """The search for `query` (the name as the user wrote it; the entity's name by default) answered."""
        query = query or entity.name
        island = self.run_tool("search", query)
        fact = entity.fact(relation)
        meta = {"kind": kind, "tool": "search", "entity": entity.name, "id": entity.id,
                "relation": relation, "expected": fact.value}
        return Exchange(user, [(f'SEARCH("{query}")', False), (format_island(island), True),
                               (fact.sentence, False)], meta)

    def fact_exchange(self) -> Exchange:
        r = self.rng
        table = FACT_TRAIN if self.split == "train" else FACT_EVAL
        kind, relation = r.choice(list(table))
        entity = r.choice([e for e in self.entities if e.kind == kind])
        embedded = [key for key in FACT_FOLLOW_TRAIN if key[0] == kind]
        if self.split == "train" and embedded and r.random() < EMBED_SHARE:
            kind, relation = r.choice(embedded)
            question = r.choice(EMBED_TRAIN).format(n=entity.name, f=r.choice(FACT_FOLLOW_TRAIN[(kind, relation)]))
        else:
            question = r.choice(table[(kind, relation)]).format(n=entity.name)
        question, query = self._hurried(question, entity.name)
        return self._ask(entity, relation, self._wrap(question), "fact", query)

    def fact_follow(self, prev: Exchange) -> Exchange | None:
        name = prev.meta.get("entity")
        if not name or prev.meta.get("kind") == "unknown":
            return None
        entity = next(e for e in self.kb.entities if e.name == name)
        options = [(k, r) for (k, r) in FACT_FOLLOW_TRAIN if k == entity.kind and r != prev.meta.get("relation")]
        if not options:
            return None
        key = self.rng.choice(options)
        return self._ask(entity, key[1], self.rng.choice(FACT_FOLLOW_TRAIN[key]), "fact-follow")

    def about_exchange(self) -> Exchange:
        entity = self.rng.choice(self.entities)
        templates = ABOUT_TRAIN if self.split == "train" else ABOUT_EVAL
        question, query = self._hurried(self.rng.choice(templates).format(n=entity.name), entity.name)
        return self._ask(entity, entity.facts[0].relation, self._wrap(question), "about", query)

    def unknown_exchange(self) -> Exchange:
        r = self.rng
        if r.random() < 0.3:
            name = r.choice(UNKNOWN_REAL)
        elif r.random() < 0.3:
            name = f"{self.unknown.word(2, 2)} {self.unknown.word(2, 3)}"
        else:
            name = self.unknown.word()
        table = FACT_TRAIN if self.split == "train" else FACT_EVAL
        templates = [t for ts in table.values() for t in ts] + (ABOUT_TRAIN if self.split == "train" else ABOUT_EVAL)
        question, name = self._hurried(r.choice(templates).format(n=name), name)
        island = self.run_tool("search", name)
        answer = (f"I don't know. The knowledge base has nothing about {name}." if island == "no results"
                  else f"I don't know. The search results do not mention {name}.")
        meta = {"kind": "unknown", "tool": "search", "entity": name, "expected": "I don't know"}
        return Exchange(self._wrap(question),
                        [(f'SEARCH("{name}")', False), (format_island(island), True), (answer, False)], meta)

    # -- documents
    def _load(self, user: str, doc_id: int, kind: str) -> Exchange:
        island = self.run_tool("load", doc_id)
        if island.startswith("error: "):
            answer = f"There is no document with id {doc_id}."
            expected = "no document"
        else:
            title = island.split(":", 1)[0]
            answer = f"Document {doc_id} is about {title}."
            expected = title
        meta = {"kind": kind, "tool": "load", "id": doc_id, "expected": expected}
        return Exchange(user, [(f"LOAD({doc_id})", False), (format_island(island), True), (answer, False)], meta)

    def load_exchange(self) -> Exchange:
        r = self.rng
        if r.random() < 0.1:
            doc_id = r.randint(len(self.kb.entities) + 1, 9999)
        else:
            doc_id = r.choice(self.entities).id
        return self._load(r.choice(LOAD_TRAIN).format(i=doc_id), doc_id, "load")

    def load_follow(self, prev: Exchange) -> Exchange | None:
        if prev.meta.get("tool") != "search" or prev.meta.get("kind") == "unknown":
            return None
        island = prev.segments[1][0]
        top = int(island.split("]", 1)[0].split("[", 1)[1])
        return self._load(self.rng.choice(LOAD_FOLLOW_TRAIN), top, "load-follow")

    # -- no tool
    def chat_exchange(self) -> Exchange:
        users, answers = self.rng.choice(CHAT)
        user = self._hurried(self.rng.choice(users))[0]  # "hi there" is small talk too, not a name to search
        return Exchange(user, [(self.rng.choice(answers), False)], {"kind": "chat", "tool": None})

    def note_exchange(self) -> Exchange:
        text = self.rng.choice(NOTE_TEXTS)
        user = self.rng.choice(NOTE_TRAIN).format(t=text)
        # The note tool has a side effect, so the corpus does not run it; "noted" is its result.
        return Exchange(user, [(f'CALL(note, text="{text}")', False), (format_island("noted"), True),
                               ("Noted.", False)], {"kind": "note", "tool": "note", "expected": "noted"})

    # -- dialogues
    def first_exchange(self) -> Exchange:
        x = self.rng.random()
        if x < 0.36:
            return self.calc_exchange()
        if x < 0.74:
            return self.fact_exchange()
        if x < 0.80:
            return self.about_exchange()
        if x < 0.88:
            return self.unknown_exchange()
        if x < 0.93:
            return self.load_exchange()
        if x < 0.98:
            return self.chat_exchange()
        return self.note_exchange()

    def next_exchange(self, prev: Exchange) -> Exchange:
        """A follow-up of the previous exchange when one fits (half the time), else a new topic."""
        if self.rng.random() < 0.5:
            follow = {"calc": self.calc_follow, "calc-follow": self.calc_follow, "fact": self.fact_follow,
                      "fact-follow": self.fact_follow, "about": self.load_follow}.get(prev.meta.get("kind", ""))
            if follow is None and prev.meta.get("tool") == "search":
                follow = self.load_follow
            if follow is not None and self.rng.random() < 0.3 and prev.meta.get("tool") == "search":
                follow = self.load_follow
            made = follow(prev) if follow else None
            if made is not None:
                return made
        return self.first_exchange()

    def dialogue(self) -> Dialogue:
        turns = self.rng.choices([1, 2, 3], weights=[0.35, 0.35, 0.3])[0]
        exchanges = [self.first_exchange()]
        while len(exchanges) < turns:
            exchanges.append(self.next_exchange(exchanges[-1]))
        return Dialogue(self.system, exchanges)

    def touches_held_out(self, dialogue: Dialogue) -> bool:
        """True if a held-out document shows up anywhere (a question, an island) in the dialogue."""
        for ex in dialogue.exchanges:
            for text, is_island in ex.segments:
                if is_island and any(f"[{i}] " in text for i in self.held_ids):
                    return True
            if ex.meta.get("id") in self.held_ids or any(
                    e.name in ex.user for e in self.kb.entities if e.held_out):
                return True
        return False

    def dialogues(self, n: int) -> list[Dialogue]:
        """n training dialogues; none of them shows a held-out entity (split "train")."""
        out: list[Dialogue] = []
        while len(out) < n:
            d = self.dialogue()
            if self.split == "train" and self.touches_held_out(d):
                continue
            out.append(d)
        return out


# Shares of training questions written another way (training.variations): arithmetic as a verb
# phrase, as a word problem, with its numbers in words; any question typed in a hurry; a fact
# question after a sentence that names the entity.
VERB_SHARE = 0.10
STORY_SHARE = 0.10
WORDS_SHARE = 0.12
CARELESS_SHARE = 0.12
EMBED_SHARE = 0.12

# Training dialogues per world: each entity of a world comes up about once, so names and numbers
# are (nearly) never seen twice.
WORLD_DIALOGUES = 400
# Every SHIPPED_EVERY-th world is the shipped knowledge base (its entities that are not held out).
SHIPPED_EVERY = 10


def generate(n: int, seed: int = 0, split: str = "train", kb_seed: int = KB_SEED,
             workers: int = 1) -> list[Dialogue]:
    """n dialogues of a split, the same for the same seeds (and for any number of workers).

    "eval" asks about the held-out entities of the shipped knowledge base. "train" cycles through
    worlds: freshly invented knowledge bases (no word of the shipped one) and, every
    SHIPPED_EVERY-th world, the shipped one without its held-out entities. Each world has its own
    seed, so `workers` processes can make the worlds side by side.
    """
    if split == "eval":
        with kb_world(build_kb(kb_seed)) as kb:
            return CorpusGenerator(kb, seed, split).dialogues(n)
    tasks = [(seed, index, min(WORLD_DIALOGUES, n - start), kb_seed)
             for index, start in enumerate(range(0, n, WORLD_DIALOGUES))]
    with worker_pool(workers) as pool:
        parts = pool.imap(_world_dialogues, tasks) if pool else map(_world_dialogues, tasks)
        return [d for part in parts for d in part]


@functools.lru_cache(maxsize=2)
def _shipped_and_words(kb_seed: int) -> tuple[KnowledgeBase, frozenset[str]]:
    shipped = build_kb(kb_seed)
    return shipped, frozenset(shipped.words())


def _world_dialogues(task: tuple[int, int, int, int]) -> list[Dialogue]:
    """The training dialogues of world `index` (one task of `generate`)."""
    seed, index, count, kb_seed = task
    shipped, shipped_words = _shipped_and_words(kb_seed)
    avoid = set(shipped_words)
    world = shipped if index % SHIPPED_EVERY == SHIPPED_EVERY - 1 else training_world(seed, index, avoid)
    with kb_world(world) as kb:
        return CorpusGenerator(kb, f"{seed}:{index}", "train", system=system_prompt(), avoid=avoid).dialogues(count)


if __name__ == "__main__":
    for d in generate(int(sys.argv[1]) if len(sys.argv) > 1 else 5, seed=int(sys.argv[2]) if len(sys.argv) > 2 else 0):
        for ex in d.exchanges:
            print("USER:", ex.user)
            print("ASSISTANT:", ex.response)
        print("-" * 60)
