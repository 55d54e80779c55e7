"""Which of a llama.cpp server's slots runs each request of a search pass, and which slots to fork first.

llama.cpp's server keeps one sequence of KV per slot and reuses only the longest common prefix of a
request with what the slot held; the rest it evaluates again (~11 ms a token on one CPU thread with
SmolLM2-135M, against ~25 ms for a whole one-token request). Left to choose a slot itself, it takes the
best free slot in the order the requests arrive, so when a search branch forks (two children of one
node in one pass) the second child lands on another branch's slot and re-evaluates everything since the
two branches parted; and an empty slot evaluates the whole prompt again. The router keeps a model of
what every slot holds and plans each pass: each request goes where it costs the fewest tokens, queueing
behind another request on the same slot where that is cheaper (on a CPU the server's time is its tokens
anyway), and where the server can save and restore a slot's KV (started with --slot-save-path) the node
a request continues is first copied into an idle slot: a copy of ~8 MB costs about what one token does.
The plan only decides where work runs: the server checks every prefix against what the slot really
holds, so a wrong model of the slots (another client, a failed copy) costs time, never correctness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# What queueing a request behind another one on the same slot costs, in tokens evaluated: on a CPU the
# server's time is its tokens, so little; it keeps otherwise equal requests on different slots.
QUEUE_COST = 1.0
# What copying a slot's KV into another costs, in tokens: save and restore of SmolLM2's ~360-token
# prompt took ~7 ms together, one token's evaluation ~11 ms (llama-server, one CPU thread).
FORK_COST = 1.0

Held = tuple[int, ...] | None  # the token ids a slot's KV holds (None: nothing)


def common_prefix(held: Held, prefix: Sequence[int]) -> int:
    """How many leading tokens of `prefix` a slot holding `held` has already evaluated."""
    if held is None:
        return 0
    count = 0
    for mine, theirs in zip(held, prefix):
        if mine != theirs:
            break
        count += 1
    return count


def tokens_to_evaluate(held: Held, prefix: Sequence[int]) -> int:
    """Tokens the server runs for `prefix` on a slot holding `held` (always at least the last one)."""
    return max(1, len(prefix) - common_prefix(held, prefix))


@dataclass
class SlotPlan:
    """A pass, planned: slot copies to make first (in order), then each slot's requests (in order)."""

    forks: list[tuple[int, int]] = field(default_factory=list)  # (source slot, destination slot)
    queues: dict[int, list[int]] = field(default_factory=dict)  # slot -> indices of the pass's requests
    held_after: list[Held] = field(default_factory=list)  # what every slot holds once the pass has run
    tokens: int = 0  # tokens the server is expected to evaluate


class SlotRouter:
    """A model of what each of a server's slots holds, and the planner of passes over them."""

    def __init__(self, slots: int, can_fork: bool = True) -> None:
        if slots < 1:
            raise ValueError("a server has at least one slot")
        self.held: list[Held] = [None] * slots
        self.last_used = [0] * slots  # when each slot last ran a request (a pass counter): forks go to the oldest
        self.can_fork = can_fork  # may the plan copy slots (the server saves and restores them)?
        self.passes = 0

    @property
    def slots(self) -> int:
        return len(self.held)

    def plan(self, prefixes: Sequence[Sequence[int]]) -> SlotPlan:
        """Where each of the pass's requests runs (see the module's docstring); the router is unchanged
        until `commit`."""
        before = list(self.held)  # forks run first, so they copy what the slots hold now
        projected = list(self.held)  # what each slot holds after the requests queued on it so far
        queues: dict[int, list[int]] = {}
        forks: list[tuple[int, int]] = []
        sources: set[int] = set()
        written: set[int] = set()  # fork destinations: they no longer hold what they held before
        total = 0
        for index, prefix in enumerate(prefixes):
            costs = [tokens_to_evaluate(projected[s], prefix) + QUEUE_COST * len(queues.get(s, []))
                     for s in range(self.slots)]
            slot = min(range(self.slots), key=lambda s: (costs[s], self.last_used[s]))
            cost = costs[slot]
            if self.can_fork:
                idle = [s for s in range(self.slots) if s not in queues and s not in written and s not in sources]
                candidates = [s for s in range(self.slots) if before[s] is not None and s not in written]
                if idle and candidates:
                    source = max(candidates, key=lambda s: common_prefix(before[s], prefix))
                    destinations = [s for s in idle if s != source]
                    fork_cost = FORK_COST + tokens_to_evaluate(before[source], prefix)
                    if destinations and fork_cost <= cost:  # on a tie the copy: its branches stay apart
                        slot = min(destinations, key=lambda s: (projected[s] is not None, self.last_used[s]))
                        forks.append((source, slot))
                        sources.add(source)
                        written.add(slot)
                        projected[slot] = before[source]
            total += tokens_to_evaluate(projected[slot], prefix)
            queues.setdefault(slot, []).append(index)
            projected[slot] = tuple(prefix)
        return SlotPlan(forks=forks, queues=queues, held_after=projected, tokens=total)

    def commit(self, plan: SlotPlan) -> None:
        """The pass ran as planned: the slots hold what the plan said they would."""
        self.passes += 1
        self.held = list(plan.held_after)
        for slot in list(plan.queues) + [destination for _, destination in plan.forks]:
            self.last_used[slot] = self.passes
