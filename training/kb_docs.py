"""The demo knowledge base: a few hundred short documents about invented entities (seeded).

Every document is a handful of sentences of the form "<Name> <relation> <value>." so an answer
can state a fact by copying one sentence from the SEARCH island. Names are invented (built from
syllables) and every name word is unique in the knowledge base, so a search for a name the
knowledge base lacks finds `no results`. A held-out share of the entities never appears in the
training dialogues; the evaluation (bench/demo_eval.py) asks about them.

    python -m training.kb_docs   # rewrites agent/demo_model/kb/docs.jsonl
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

KB_SEED = 6
HELD_OUT_SHARE = 0.15
# Documents stay under the search snippet length (200 characters), so a hit shows every fact.
MAX_DOC_CHARS = 200

_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "pr", "r", "s",
           "st", "t", "tr", "v", "z", "th", "sh", "c", "j", "w", "y", "sk", "pl"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "io", "ou", "ei", "y"]
_CODAS = ["", "", "", "n", "r", "l", "s", "th", "nd", "rk", "m", "x", "v", "lt", "sk"]

THINGS = ["lantern", "loom", "compass", "clock", "pump", "telescope", "printing press", "bicycle",
          "kettle", "sundial", "water wheel", "microscope", "barometer", "harp", "glider", "lens",
          "lock", "plough", "sextant", "thermometer", "windmill", "typewriter", "radio", "camera"]
THING_ADJ = ["glass", "steam", "folding", "silent", "copper", "floating", "mirror", "pocket",
             "solar", "spring", "rolling", "twin", "paper", "magnetic", "wooden", "electric"]
PRODUCTS = ["bicycles", "clocks", "lamps", "ships", "tea", "shoes", "radios", "bridges", "glassware",
            "maps", "violins", "tractors", "medicine", "paper", "cheese", "rope", "engines", "toys",
            "soap", "batteries", "telescopes", "carpets", "umbrellas", "candles"]
COLORS = ["silver", "green", "golden", "blue", "red", "white", "black", "violet", "grey", "yellow"]
JOBS = ["an inventor", "a painter", "a poet", "an astronomer", "a composer", "an explorer",
        "a chemist", "an architect", "a mathematician", "a sailor"]


@dataclass
class Fact:
    """One fact of an entity: the sentence the answer copies and the value it must contain."""

    relation: str  # e.g. "founded", "capital", "population"
    value: str
    sentence: str


@dataclass
class Entity:
    id: int  # the document id
    kind: str  # country | city | person | element | company | mountain | lake
    name: str
    facts: list[Fact] = field(default_factory=list)
    held_out: bool = False

    @property
    def text(self) -> str:
        return " ".join(f.sentence for f in self.facts)

    def fact(self, relation: str) -> Fact:
        for f in self.facts:
            if f.relation == relation:
                return f
        raise KeyError(f"{self.name} has no fact {relation!r}")

    def doc(self) -> dict[str, object]:
        return {"id": self.id, "title": self.name, "text": self.text}


class NameMaker:
    """Invented, unique, capitalised words; no word is ever handed out twice."""

    def __init__(self, rng: random.Random, taken: set[str] | None = None) -> None:
        self.rng = rng
        self.taken: set[str] = set(taken or ())

    def word(self, min_syl: int = 2, max_syl: int = 3) -> str:
        while True:
            n = self.rng.randint(min_syl, max_syl)
            parts = []
            for i in range(n):
                parts.append(self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS))
                if i == n - 1 or self.rng.random() < 0.3:
                    parts.append(self.rng.choice(_CODAS))
            w = "".join(parts)
            if 4 <= len(w) <= 10 and w not in self.taken:
                self.taken.add(w)
                return w.capitalize()


@dataclass
class KnowledgeBase:
    entities: list[Entity]

    def docs(self) -> list[dict[str, object]]:
        return [e.doc() for e in sorted(self.entities, key=lambda e: e.id)]

    def by_kind(self, kind: str, held_out: bool | None = None) -> list[Entity]:
        return [e for e in self.entities if e.kind == kind and (held_out is None or e.held_out == held_out)]

    def by_id(self, doc_id: int) -> Entity:
        return next(e for e in self.entities if e.id == doc_id)

    def name_words(self) -> set[str]:
        return {w.lower() for e in self.entities for w in e.name.split()}

    def words(self) -> set[str]:
        """Every lower-case word of every document (names, currencies, values)."""
        return {w.lower().strip(".:") for e in self.entities for w in f"{e.name} {e.text}".split()}


def build_kb(seed: int | str = KB_SEED, taken: set[str] | None = None) -> KnowledgeBase:
    """The knowledge base for a seed; the same seed always gives the same documents and split.

    `taken`: lower-case words no invented word may be (training worlds avoid the shipped ones).
    """
    rng = random.Random(seed)
    names = NameMaker(rng, taken)
    entities: list[Entity] = []

    countries = [Entity(0, "country", names.word(2, 2)) for _ in range(30)]
    cities: list[Entity] = []
    for _country in countries:
        for _ in range(4):
            cities.append(Entity(0, "city", names.word()))
    for i, c in enumerate(countries):
        own = cities[4 * i: 4 * i + 4]
        capital = own[0]
        currency = names.word(1, 2).lower()
        c.facts = [
            Fact("capital", capital.name, f"The capital of {c.name} is {capital.name}."),
            Fact("currency", currency, f"{c.name} uses the {currency} as its currency."),
            Fact("population", str(rng.randint(200_000, 90_000_000)),
                 ""),
            Fact("flag", rng.choice(COLORS), ""),
        ]
        c.facts[2].sentence = f"{c.name} has a population of {c.facts[2].value}."
        c.facts[3].sentence = f"The flag of {c.name} is {c.facts[3].value}."
        for city in own:
            city.facts = [
                Fact("country", c.name, f"{city.name} is a city in {c.name}."),
                Fact("founded", str(rng.randint(600, 1990)), ""),
                Fact("population", str(rng.randint(1_000, 3_000_000)), ""),
            ]
            city.facts[1].sentence = f"{city.name} was founded in {city.facts[1].value}."
            city.facts[2].sentence = f"{city.name} has a population of {city.facts[2].value}."
    entities += countries + cities

    for _ in range(70):
        p = Entity(0, "person", f"{names.word(2, 2)} {names.word(2, 3)}")
        born = rng.randint(1500, 1990)
        thing = f"{rng.choice(THING_ADJ)} {rng.choice(THINGS)}"
        home = rng.choice(cities)
        p.facts = [
            Fact("job", rng.choice(JOBS), ""),
            Fact("born", str(born), f"{p.name} was born in {born}."),
            Fact("invented", thing, f"{p.name} invented the {thing}."),
            Fact("lived", home.name, f"{p.name} lived in {home.name}."),
        ]
        p.facts[0].sentence = f"{p.name} was {p.facts[0].value}."
        entities.append(p)

    for _ in range(50):
        e = Entity(0, "element", names.word(2, 2) + "ium")
        symbol = e.name[0] + rng.choice("abcdefghiklmnorstuxyz")
        number = str(rng.randint(120, 400))
        melts = str(rng.randint(-200, 3900))
        e.facts = [
            Fact("kind", "element", f"{e.name} is a chemical element."),
            Fact("symbol", symbol, f"The symbol of {e.name} is {symbol}."),
            Fact("atomic number", number, f"The atomic number of {e.name} is {number}."),
            Fact("melts", melts, f"{e.name} melts at {melts} degrees."),
        ]
        entities.append(e)

    for _ in range(50):
        co = Entity(0, "company", names.word())
        founded = str(rng.randint(1800, 2020))
        product = rng.choice(PRODUCTS)
        base = rng.choice(cities)
        co.facts = [
            Fact("makes", product, f"{co.name} is a company that makes {product}."),
            Fact("founded", founded, f"{co.name} was founded in {founded}."),
            Fact("based", base.name, f"{co.name} is based in {base.name}."),
            Fact("employees", str(rng.randint(5, 90_000)), ""),
        ]
        co.facts[3].sentence = f"{co.name} has {co.facts[3].value} employees."
        entities.append(co)

    for _ in range(40):
        m = Entity(0, "mountain", names.word())
        where = rng.choice(countries)
        m.facts = [
            Fact("country", where.name, f"{m.name} is a mountain in {where.name}."),
            Fact("height", str(rng.randint(800, 8800)), ""),
        ]
        m.facts[1].sentence = f"{m.name} is {m.facts[1].value} meters high."
        entities.append(m)

    for _ in range(30):
        lake = Entity(0, "lake", names.word())
        where = rng.choice(countries)
        lake.facts = [
            Fact("country", where.name, f"{lake.name} is a lake in {where.name}."),
            Fact("depth", str(rng.randint(5, 1600)), ""),
        ]
        lake.facts[1].sentence = f"{lake.name} is {lake.facts[1].value} meters deep."
        entities.append(lake)

    # Document ids in a shuffled order so every kind spreads over the whole id range.
    ids = list(range(1, len(entities) + 1))
    rng.shuffle(ids)
    for e, i in zip(entities, ids):
        e.id = i
        if len(e.text) > MAX_DOC_CHARS:
            raise AssertionError(f"document {e.name} is longer than {MAX_DOC_CHARS} characters: {e.text}")
    # Held-out entities: per kind, a fixed share never appears in a training dialogue.
    for kind in sorted({e.kind for e in entities}):
        group = [e for e in entities if e.kind == kind]
        for e in rng.sample(group, max(1, round(HELD_OUT_SHARE * len(group)))):
            e.held_out = True
    return KnowledgeBase(entities)


def docs_path() -> Path:
    """The shipped documents in the checkout (package data of agent.demo_model), which this rewrites."""
    return Path(__file__).resolve().parent.parent / "agent" / "demo_model" / "kb" / "docs.jsonl"


def write_docs(path: Path | None = None, seed: int = KB_SEED) -> Path:
    """Write the knowledge base as JSON lines {"id", "title", "text"} sorted by id."""
    out = path or docs_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(d, ensure_ascii=False) for d in build_kb(seed).docs()]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    print(write_docs())
