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
import json
import os
import random
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Iterator

from training.kb_docs import KB_SEED, Entity, KnowledgeBase, NameMaker, build_kb

ISLAND_LIMIT = 1000  # README: a result longer than this is cut and ends with " ...[truncated]"

Segment = tuple[str, bool]  # (text, is_island)


def format_island(result: str) -> str:
    """README island: `\\n=> ` + the result on one line + `\\n`, cut at the limit."""
    one_line = result.replace("\n", "\\n")
    if len(one_line) > ISLAND_LIMIT:
        one_line = one_line[:ISLAND_LIMIT] + " ...[truncated]"
    return f"\n=> {one_line}\n"


@dataclass
class Exchange:
    """One user message and the assistant's response as segments; `meta` says what was asked."""

    user: str
    segments: list[Segment]
    meta: dict = field(default_factory=dict)

    @property
    def response(self) -> str:
        return "".join(text for text, _ in self.segments)


@dataclass
class Dialogue:
    system: str
    exchanges: list[Exchange]

    def messages(self) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.system}]
        for ex in self.exchanges:
            out.append({"role": "user", "content": ex.user})
            out.append({"role": "assistant", "content": ex.response})
        return out

    def to_json(self) -> str:
        return json.dumps({"system": self.system, "exchanges": [
            {"user": e.user, "segments": e.segments, "meta": e.meta} for e in self.exchanges]})


def system_prompt() -> str:
    """The system prompt the shell builds for the built-in tools (the model is trained on it)."""
    from agent.grammar.system_prompt import build_system_prompt
    from agent.tooling.registry import default_registry

    return build_system_prompt(list(default_registry()))


@contextmanager
def kb_world(kb: KnowledgeBase) -> Iterator[KnowledgeBase]:
    """Point the real SEARCH/LOAD tools at a fresh index of this knowledge base's documents."""
    from agent.tools import kb as kb_module

    old = os.environ.get("AGENT_KB")
    with tempfile.TemporaryDirectory(prefix="demo-kb-") as tmp:
        db_path = Path(tmp) / "kb.sqlite"
        db = kb_module.sqlite_utils.Database(db_path)
        kb_module._create(db)
        kb_module._insert(db, [kb_module.Doc(d["id"], d["title"], d["text"]) for d in kb.docs()])
        db.close()
        os.environ["AGENT_KB"] = str(db_path)
        try:
            yield kb
        finally:
            if old is None:
                os.environ.pop("AGENT_KB", None)
            else:
                os.environ["AGENT_KB"] = old


def shipped_kb(seed: int = KB_SEED) -> ContextManager[KnowledgeBase]:
    """The real SEARCH/LOAD tools over the shipped knowledge base (the documents of this seed)."""
    return kb_world(build_kb(seed))


def training_world(seed: int, index: int, avoid: set[str]) -> KnowledgeBase:
    """Another knowledge base of the same shape: new names and numbers, none of the words in `avoid`.

    Training on many such worlds leaves the model nothing to memorise: it has to copy the name
    from the question into SEARCH and the fact from the island into the answer, which is what
    it needs for the held-out entities of the shipped knowledge base.
    """
    kb = build_kb(f"world:{seed}:{index}", taken=avoid)
    for entity in kb.entities:
        entity.held_out = False
    return kb


# ---------------------------------------------------------------- templates
# Training and evaluation templates are disjoint; both use the same relation keywords.

CALC_TRAIN = ["What is {q}?", "What's {q}?", "Compute {q}.", "Calculate {q}.", "{q} = ?", "How much is {q}?",
              "Please compute {q}.", "Can you work out {q}?", "What do you get for {q}?", "Evaluate {q}.",
              "{q}?", "Solve {q}.", "what is {q}", "calc {q}", "Tell me {q}.", "How much is {q} exactly?",
              "Can you calculate {q} for me?", "I need the value of {q}.", "Compute {q} please.",
              "What is the value of {q}?", "Work out {q}.", "Give me {q}.", "Hey, what is {q}?"]
CALC_EVAL = ["Could you figure out {q}?", "What does {q} come to?", "Find the value of {q}.",
             "Quick question: what is {q}?", "Please calculate {q}.", "What is the result of {q}?",
             "Determine {q}.", "I want to know {q}."]

CALC_FOLLOW_TRAIN = [("Now add {n} to that.", "+"), ("Add {n} to it.", "+"), ("And plus {n}?", "+"),
                     ("Subtract {n} from that.", "-"), ("Now take away {n}.", "-"), ("And minus {n}?", "-"),
                     ("Multiply that by {n}.", "*"), ("Now times {n}?", "*"), ("And times {n}?", "*"),
                     ("Divide that by {n}.", "/"), ("Now divide it by {n}.", "/")]

WORD_OPS_TRAIN = {"+": ["plus"], "-": ["minus"], "*": ["times", "multiplied by"], "/": ["divided by", "over"],
                  "**": ["to the power of"], "%": ["modulo", "mod"]}
SYMBOL_OPS = {"+": ["+"], "-": ["-"], "*": ["*", "x"], "/": ["/"], "**": ["**", "^"], "%": ["%"]}

# relation -> (kind, question templates); the answer is the document's sentence for the relation.
FACT_TRAIN: dict[tuple[str, str], list[str]] = {
    ("country", "capital"): ["What is the capital of {n}?", "What's the capital of {n}?",
                             "Which city is the capital of {n}?", "capital of {n}?",
                             "Name the capital of {n}.", "Tell me the capital of {n}."],
    ("country", "currency"): ["What currency does {n} use?", "What is the currency of {n}?",
                              "Which currency is used in {n}?", "currency of {n}?"],
    ("country", "population"): ["What is the population of {n}?", "How many people live in {n}?",
                                "population of {n}?", "How large is the population of {n}?"],
    ("country", "flag"): ["What color is the flag of {n}?", "What is the flag of {n} like?",
                          "Describe the flag of {n}."],
    ("city", "country"): ["Which country is {n} in?", "In which country is {n}?", "Where is {n}?",
                          "What country is {n} located in?"],
    ("city", "founded"): ["When was {n} founded?", "In what year was {n} founded?", "What year was {n} founded?",
                          "When did {n} get founded?", "{n} was founded when?", "Founding year of {n}?"],
    ("city", "population"): ["What is the population of {n}?", "How many people live in {n}?",
                             "population of {n}?", "How many inhabitants does {n} have?"],
    ("person", "job"): ["Who was {n}?", "What was {n}'s job?", "What did {n} do for a living?"],
    ("person", "born"): ["When was {n} born?", "What year was {n} born?", "In which year was {n} born?",
                         "Birth year of {n}?"],
    ("person", "invented"): ["What did {n} invent?", "What was invented by {n}?",
                             "Which invention is {n} known for?"],
    ("person", "lived"): ["Where did {n} live?", "Which city did {n} live in?", "In what city did {n} live?"],
    ("element", "symbol"): ["What is the symbol of {n}?", "What is the chemical symbol for {n}?",
                            "Which symbol does {n} have?"],
    ("element", "atomic number"): ["What is the atomic number of {n}?", "atomic number of {n}?",
                                   "Which atomic number does {n} have?"],
    ("element", "melts"): ["At what temperature does {n} melt?", "What is the melting point of {n}?",
                           "When does {n} melt?", "How hot must {n} be to melt?"],
    ("element", "kind"): ["What is {n}?", "Is {n} an element?"],
    ("company", "makes"): ["What does {n} make?", "What does the company {n} produce?", "What is {n}?",
                           "Which products does {n} make?"],
    ("company", "founded"): ["When was {n} founded?", "What year was {n} founded?",
                             "In what year was the company {n} founded?"],
    ("company", "based"): ["Where is {n} based?", "In which city is {n} based?", "Where is the company {n}?"],
    ("company", "employees"): ["How many employees does {n} have?", "How many people work at {n}?",
                               "Number of employees at {n}?"],
    ("mountain", "height"): ["How high is {n}?", "How tall is {n}?", "What is the height of {n}?",
                             "height of {n}?"],
    ("mountain", "country"): ["Where is {n}?", "In which country is {n}?", "What is {n}?"],
    ("lake", "depth"): ["How deep is {n}?", "What is the depth of {n}?", "depth of {n}?"],
    ("lake", "country"): ["Where is {n}?", "In which country is the lake {n}?", "What is {n}?"],
}
# Generic phrasings around a relation's noun ("Give me the height of X."), three per relation, so
# the model keys on the relation word wherever the question puts it.
RELATION_NOUNS: dict[tuple[str, str], str] = {
    ("country", "capital"): "capital", ("country", "currency"): "currency",
    ("country", "population"): "population", ("country", "flag"): "flag", ("city", "country"): "country",
    ("city", "founded"): "founding year", ("city", "population"): "population",
    ("person", "job"): "profession", ("person", "born"): "birth year", ("person", "invented"): "invention",
    ("person", "lived"): "home city", ("element", "symbol"): "symbol", ("element", "atomic number"): "atomic number",
    ("element", "melts"): "melting point", ("company", "makes"): "products", ("company", "founded"): "founding year",
    ("company", "based"): "home city", ("company", "employees"): "number of employees",
    ("mountain", "height"): "height", ("lake", "depth"): "depth",
}
NOUN_TRAIN = ["Give me the {r} of {n}.", "I want the {r} of {n}.", "Look for the {r} of {n}.",
              "Look up the {r} of {n}.", "The {r} of {n}, please.", "What's the {r} of {n}?"]
for _i, (_key, _noun) in enumerate(RELATION_NOUNS.items()):
    FACT_TRAIN[_key] += [NOUN_TRAIN[(_i + j) % len(NOUN_TRAIN)].replace("{r}", _noun) for j in range(3)]
# Questions asked indirectly ("I wonder how high X is."): the relation as a clause, in frames
# of training's own (the evaluation's frames are others).
RELATION_CLAUSES: dict[tuple[str, str], str] = {
    ("country", "capital"): "what the capital of {n} is", ("country", "currency"): "which currency {n} uses",
    ("country", "population"): "how many people live in {n}", ("country", "flag"): "what the flag of {n} looks like",
    ("city", "country"): "which country {n} is in", ("city", "founded"): "when {n} was founded",
    ("city", "population"): "how many people live in {n}", ("person", "job"): "who {n} was",
    ("person", "born"): "when {n} was born", ("person", "invented"): "what {n} invented",
    ("person", "lived"): "where {n} lived", ("element", "symbol"): "what the symbol of {n} is",
    ("element", "atomic number"): "what the atomic number of {n} is",
    ("element", "melts"): "at what temperature {n} melts", ("company", "makes"): "what {n} makes",
    ("company", "founded"): "when {n} was founded", ("company", "based"): "where {n} is based",
    ("company", "employees"): "how many employees {n} has", ("mountain", "height"): "how high {n} is",
    ("lake", "depth"): "how deep {n} is",
}
INDIRECT_TRAIN = ["I wonder {c}.", "Could you find out {c}?", "Please check {c}.", "I need to know {c}.",
                  "Can you say {c}?", "Any idea {c}?", "Find out {c}.", "I'm curious {c}.",
                  "Could you look up {c}?", "Let me know {c}."]
for _i, (_key, _clause) in enumerate(RELATION_CLAUSES.items()):
    FACT_TRAIN[_key] += [INDIRECT_TRAIN[(2 * _i + j) % len(INDIRECT_TRAIN)].replace("{c}", _clause)
                         for j in range(3)]
# Training only: words people put around a question (greetings, thanks), a quarter of the time.
WRAP_TRAIN = ["Hi! {q}", "Hey, {q}", "Question: {q}", "{q} Thanks.", "{q} Thank you!",
              "I have a question. {q}", "Please help: {q}", "Can you look this up? {q}", "I wonder... {q}",
              "One more thing: {q}", "{q} Please check.", "Hello. {q}", "{q} I need it for a quiz."]
WRAP_SHARE = 0.25
FACT_EVAL: dict[tuple[str, str], list[str]] = {
    ("country", "capital"): ["Do you know the capital of {n}?", "I'd like to know the capital of {n}."],
    ("country", "currency"): ["Tell me which currency {n} uses.", "In {n}, what is the currency?"],
    ("country", "population"): ["Do you know the population of {n}?", "Tell me how many people live in {n}."],
    ("country", "flag"): ["Tell me the color of the flag of {n}."],
    ("city", "country"): ["Tell me which country {n} is in.", "Do you know where {n} is?"],
    ("city", "founded"): ["Do you know when {n} was founded?", "Tell me the year {n} was founded."],
    ("city", "population"): ["Tell me the population of {n}.", "Do you know how many people live in {n}?"],
    ("person", "job"): ["Do you know who {n} was?"],
    ("person", "born"): ["Do you know when {n} was born?", "Tell me the year {n} was born."],
    ("person", "invented"): ["Tell me what {n} invented.", "Do you know what {n} invented?"],
    ("person", "lived"): ["Tell me where {n} lived.", "Do you know in which city {n} lived?"],
    ("element", "symbol"): ["Tell me the symbol of {n}.", "Do you know the chemical symbol of {n}?"],
    ("element", "atomic number"): ["Tell me the atomic number of {n}."],
    ("element", "melts"): ["Tell me the melting point of {n}.", "Do you know at what temperature {n} melts?"],
    ("company", "makes"): ["Tell me what {n} makes.", "Do you know what {n} makes?"],
    ("company", "founded"): ["Do you know when {n} was founded?", "Tell me the year {n} was founded."],
    ("company", "based"): ["Tell me where {n} is based.", "Do you know where {n} is based?"],
    ("company", "employees"): ["Tell me how many employees {n} has."],
    ("mountain", "height"): ["Tell me how high {n} is.", "Do you know the height of {n}?"],
    ("lake", "depth"): ["Tell me how deep {n} is.", "Do you know the depth of {n}?"],
}
FACT_FOLLOW_TRAIN: dict[tuple[str, str], list[str]] = {
    ("country", "capital"): ["And its capital?", "What about its capital?"],
    ("country", "currency"): ["Which currency does it use?", "And its currency?"],
    ("country", "population"): ["How many people live there?", "And its population?"],
    ("city", "founded"): ["When was it founded?", "And when was it founded?"],
    ("city", "population"): ["How many people live there?", "What about its population?"],
    ("city", "country"): ["Which country is it in?"],
    ("person", "born"): ["When was he born?", "And when was she born?"],
    ("person", "invented"): ["What did he invent?", "What did she invent?"],
    ("person", "lived"): ["Where did he live?", "Where did she live?"],
    ("element", "symbol"): ["What is its symbol?"],
    ("element", "atomic number"): ["And its atomic number?"],
    ("element", "melts"): ["When does it melt?"],
    ("company", "makes"): ["What does it make?"],
    ("company", "based"): ["Where is it based?"],
    ("company", "founded"): ["When was it founded?"],
    ("mountain", "height"): ["How high is it?"],
    ("lake", "depth"): ["How deep is it?"],
}
ABOUT_TRAIN = ["Tell me about {n}.", "What do you know about {n}?", "Search for {n}.", "Look up {n}.",
               "Find information about {n}.", "{n}?", "Any facts about {n}?"]
ABOUT_EVAL = ["Give me some information on {n}."]

LOAD_TRAIN = ["Open document {i}.", "Load document {i}.", "Show me document {i}.", "What does document {i} say?",
              "LOAD {i}", "Load doc {i}.", "Can you open document number {i}?", "Read document {i}.",
              "Open doc {i}", "Show document {i}.", "I'd like to see document {i}.", "Could you load document {i}?",
              "Print document {i}.", "Let me read document {i}.", "document {i}", "Get document {i} for me.",
              "Bring up document {i}.", "Please load document number {i}."]
LOAD_FOLLOW_TRAIN = ["Open that document.", "Show me the full document.", "Load the first result.",
                     "Can you open the document?", "Show me the whole entry.", "Open it."]

NOTE_TRAIN = ["Take a note: {t}", "Note this: {t}", "Please write down: {t}", "Remember this: {t}",
              "Add a note: {t}", "Make a note that {t}"]
NOTE_TEXTS = ["buy milk", "call the bank tomorrow", "meeting at 10", "water the plants", "pay the rent",
              "read chapter 4", "the wifi password is on the fridge", "book a table for two",
              "send the report on Friday", "pick up the parcel", "renew the passport", "back up the laptop"]

CHAT: list[tuple[list[str], list[str]]] = [
    (["Hello!", "Hi", "Hey there", "hello", "Good morning!", "Hi there!", "Good evening.", "Good afternoon!",
      "Greetings!", "Hi, how do you do?"],
     ["Hello! How can I help you today?", "Hi! What can I do for you?"]),
    (["How are you?", "How are you doing today?", "How's it going?"],
     ["I'm doing well, thank you. How can I help?", "I'm fine, thanks for asking. What can I do for you?"]),
    (["Thanks!", "Thank you.", "thanks a lot", "Great, thanks!", "Thank you very much!", "Cheers!"],
     ["You're welcome!", "Glad I could help."]),
    (["Who are you?", "What are you?", "What is your name?"],
     ["I am a small assistant that runs in your terminal. I can search a knowledge base and do arithmetic."]),
    (["What can you do?", "How can you help me?", "What are your tools?"],
     ["I can search the knowledge base, open documents by id, calculate arithmetic and take notes."]),
    (["Bye!", "Goodbye.", "See you later.", "bye", "Have a nice evening!", "Take care!", "See you tomorrow.",
      "Good day to you!", "Sleep well!", "I'm off now, bye."], ["Goodbye! Have a nice day.", "See you!"]),
    (["Tell me a joke.", "Make me laugh.", "Do you know a joke?"],
     ["Why did the computer go to the doctor? It had a virus.",
      "I told my computer a joke about numbers, but it only counted the words."]),
    (["Are you a robot?", "Are you human?"], ["I am a language model, not a person."]),
    (["ok", "OK.", "Cool.", "Nice."], ["Let me know if you need anything else."]),
    (["Can you help me?", "I have a question.", "Can I ask you something?"],
     ["Of course. What would you like to know?"]),
]
CHAT_EVAL = [(["Hi, nice to meet you."], []), (["Thanks, that helps."], []), (["Good night!"], [])]

# Words that are nowhere in the knowledge base: questions about them get `no results`.
UNKNOWN_REAL = ["France", "Paris", "Berlin", "Einstein", "Tokyo", "Brazil", "Mozart", "Jupiter", "Everest",
                "Google", "Amazon", "Shakespeare", "Napoleon", "Egypt", "Canada", "Lisbon", "Oxygen",
                "Gold", "Newton", "Curie", "Nile", "Sahara", "Chicago", "Toyota", "Picasso"]


# ---------------------------------------------------------------- generator

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
        from agent.tools.calc import calc
        from agent.tools.load import load
        from agent.tools.search import search

        self._tools = {"calc": calc, "load": load, "search": search}

    # -- tools (the real ones; errors become `error: <message>` as the shell writes them)
    def run_tool(self, name: str, arg: object) -> str:
        from agent.tooling.spec import ToolFailure

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
        expr, shown = self._expr()
        templates = CALC_TRAIN if self.split == "train" else CALC_EVAL
        return self._calc_answer(self._wrap(self.rng.choice(templates).format(q=shown)), expr, {"kind": "calc"})

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
    def _ask(self, entity: Entity, relation: str, user: str, kind: str) -> Exchange:
        island = self.run_tool("search", entity.name)
        fact = entity.fact(relation)
        meta = {"kind": kind, "tool": "search", "entity": entity.name, "id": entity.id,
                "relation": relation, "expected": fact.value}
        return Exchange(user, [(f'SEARCH("{entity.name}")', False), (format_island(island), True),
                               (fact.sentence, False)], meta)

    def fact_exchange(self) -> Exchange:
        table = FACT_TRAIN if self.split == "train" else FACT_EVAL
        kind, relation = self.rng.choice(list(table))
        entity = self.rng.choice([e for e in self.entities if e.kind == kind])
        return self._ask(entity, relation, self._wrap(self.rng.choice(table[(kind, relation)]).format(n=entity.name)),
                         "fact")

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
        return self._ask(entity, entity.facts[0].relation, self._wrap(self.rng.choice(templates).format(n=entity.name)),
                         "about")

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
        island = self.run_tool("search", name)
        answer = (f"I don't know. The knowledge base has nothing about {name}." if island == "no results"
                  else f"I don't know. The search results do not mention {name}.")
        meta = {"kind": "unknown", "tool": "search", "entity": name, "expected": "I don't know"}
        return Exchange(self._wrap(r.choice(templates).format(n=name)),
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
        return Exchange(self.rng.choice(users), [(self.rng.choice(answers), False)], {"kind": "chat", "tool": None})

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


@contextmanager
def worker_pool(workers: int) -> Iterator[Any]:
    """A pool of `workers` forked processes (they inherit the parent's data), or None when one
    process will do or the platform cannot fork (the work then runs in this process)."""
    import multiprocessing

    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield pool


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
    import sys

    for d in generate(int(sys.argv[1]) if len(sys.argv) > 1 else 5, seed=int(sys.argv[2]) if len(sys.argv) > 2 else 0):
        for ex in d.exchanges:
            print("USER:", ex.user)
            print("ASSISTANT:", ex.response)
        print("-" * 60)
