"""Strategy `mcmc`: sample a whole response from p(x)^alpha by suffix resampling (Karan & Du 2025).

The target is pi(x) proportional to p(x)^alpha over the responses the turn's grammar accepts, where
log p(x) is the sum of the model's log-probs of its own tokens (grammar-forced text included, EOS
when the model ended the response, islands excluded: the tools wrote them). alpha = 1 is the model
itself; alpha -> infinity concentrates on the most likely response (maximisation).

One Metropolis-Hastings step from the current response x (its K sampled tokens, EOS counted):
1. pick a position i uniformly in 0..K-1 and keep x's first i sampled tokens (with their islands);
2. resample the rest token by token from the proposal q: the model's next-token distribution under
   the grammar mask at temperature `proposal_temperature` (1/alpha as Karan & Du; 1 = plain);
   islands are forced as in every strategy (the token tree's grow: pure tools run on the branch, a
   side-effect call ends the branch as pending and runs only on the chosen answer);
3. accept x' with probability min(1, pi(x') q(x | x') / (pi(x) q(x' | x))), where
   q(x' | x) = (1/K) * prod q(x'_t | x'_<t) over the resampled tokens and q(x | x') = (1/K') * the
   same product for x's old suffix: the move (i, x') is reversed by the move (i, x), so the ratio is
   exact without summing over positions. A proposal that ends where no response can (a grammar dead
   end, a loop the tree refuses, the length limit inside an unfinished call) has target 0: rejected.

Everything runs on the token tree (agent.decoding.token_tree): a prefix is run through the model
once, so re-proposing a suffix the chain has seen costs no forward pass.
Two tokens that both end a response (several EOS ids) count as two states; this changes the
target only by how p(EOS) splits between them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.kv_cache import PrefixCache
from agent.decoding.progress import ProgressSink
from agent.decoding.results import SearchResult
from agent.decoding.token_tree import Node, TokenTree
from agent.model.backend import ModelBackend

# A proposal on a path the tree holds costs no forward pass: the chain stops after this many
# proposals per pass of budget, so a small, fully explored response space still ends.
STEPS_PER_PASS = 4
# Initial states tried when the greedy path is a dead end (each a full draw from the proposal).
INIT_DRAWS = 8


@dataclass
class ChainStats:
    """What a chain did: proposals, how many were accepted, how many reached no valid response."""

    proposals: int = 0
    accepted: int = 0  # proposals of another response that were accepted
    unchanged: int = 0  # proposals that drew the current response again (a move to itself)
    invalid: int = 0  # proposals ending in a dead end (target 0), rejected
    cut: int = 0  # proposals abandoned because the budget or the user stopped them

    @property
    def acceptance(self) -> float:
        """Accepted share of the proposals that offered another response."""
        moves = self.proposals - self.unchanged
        return self.accepted / moves if moves else 0.0


class BudgetSpent(Exception):
    """The forward-pass budget ran out (or the user stopped) in the middle of a proposal."""


def log_target(leaf: Node) -> float:
    """log p(x) of the response ending at a complete node (its model tokens, EOS if it ended there)."""
    return leaf.sum_logprob + (leaf.eos_logprob or 0.0)


def node_token(node: Node) -> int:
    """The token that was sampled to make this node (EOS nodes hold no token of their own)."""
    if node.tokens:
        return node.tokens[0]
    assert node.parent is not None
    return next(token for token, child in node.parent.children.items() if child is node)


class SuffixSampler:
    """Suffix-resampling Metropolis-Hastings on one token tree (one chain)."""

    def __init__(self, tree: TokenTree, alpha: float, proposal_temperature: float, generator: torch.Generator,
                 budget: int, should_stop: Callable[[], bool] | None = None) -> None:
        if alpha <= 0 or proposal_temperature <= 0:
            raise ValueError("alpha and the proposal temperature must be > 0")
        self.tree = tree
        self.alpha = alpha
        self.temperature = proposal_temperature
        self.generator = generator
        self.budget = budget
        self.should_stop = should_stop
        self.stats = ChainStats()
        self._log_q: dict[int, float] = {}  # node id -> log q(its token | its parent)

    # -- the proposal ----------------------------------------------------------------------------
    def proposal_logprobs(self, node: Node) -> torch.Tensor:
        """log q( . | node): the next-token distribution under the grammar mask at the proposal temperature."""
        assert node.next_logprobs is not None
        logits = node.next_logprobs.float()
        if node.allowed is not None:
            logits = logits.masked_fill(~node.allowed, float("-inf"))
        return torch.log_softmax(logits / self.temperature, dim=-1)

    def log_q(self, node: Node) -> float:
        """log q(node's token | its parent), remembered per node."""
        if node.id not in self._log_q:
            assert node.parent is not None
            self._log_q[node.id] = float(self.proposal_logprobs(node.parent)[node_token(node)])
        return self._log_q[node.id]

    def _evaluate(self, node: Node) -> None:
        if not self.tree.needs_evaluation(node):
            return
        if (self.tree.forward_passes >= self.budget or self.tree.deadline.passed()
                or self.tree.stop_requested(self.should_stop)):
            raise BudgetSpent
        self.tree.evaluate([node])
        if self.tree.interrupted:
            raise BudgetSpent

    def draw_suffix(self, start: Node, cold: bool = False) -> tuple[Node | None, float]:
        """Grow from `start` to a complete node drawing from q (argmax when cold); (leaf or None, log q)."""
        node, total = start, 0.0
        while True:
            self._evaluate(node)
            if node.status == "complete":
                return node, total
            if node.status == "dead" or node.next_logprobs is None:
                return None, total
            log_q = self.proposal_logprobs(node)
            if not bool(torch.isfinite(log_q).any()):
                return None, total
            if cold:
                token = int(torch.argmax(log_q))
            else:
                token = int(torch.multinomial(log_q.exp(), 1, generator=self.generator))
            total += float(log_q[token])
            child = node.children.get(token) or self.tree.grow(node, token)
            if child.status == "dead":
                return None, total
            node = child

    # -- the chain -------------------------------------------------------------------------------
    def initial(self) -> Node | None:
        """The greedy path under the mask, or when that is a dead end, draws from the proposal."""
        leaf, _ = self.draw_suffix(self.tree.root, cold=True)
        for _ in range(INIT_DRAWS):
            if leaf is not None:
                break
            leaf, _ = self.draw_suffix(self.tree.root)
        if leaf is not None:
            self._evaluate(leaf)
        return leaf

    def step(self, current: Node) -> Node:
        """One Metropolis-Hastings step; returns the next state (the same node when rejected)."""
        path = current.path()
        if not path:
            return current
        i = int(torch.randint(len(path), (1,), generator=self.generator))
        start = self.tree.root if i == 0 else path[i - 1]
        self.stats.proposals += 1
        try:
            proposed, forward = self.draw_suffix(start)
        except BudgetSpent:
            self.stats.cut += 1
            raise
        if proposed is None:
            self.stats.invalid += 1
            return current
        if proposed is current:
            self.stats.unchanged += 1
            return current
        reverse = sum(self.log_q(node) for node in path[i:])
        new_length = len(proposed.path())
        log_ratio = (self.alpha * (log_target(proposed) - log_target(current))
                     + reverse - math.log(new_length) - forward + math.log(len(path)))
        u = float(torch.rand((), generator=self.generator).clamp(1e-12, 1.0))
        if math.log(u) < log_ratio:
            self.stats.accepted += 1
            return proposed
        return current

    def run(self, current: Node, steps: int, on_state: Callable[[Node], None] | None = None) -> Node:
        """Up to `steps` steps from `current` (fewer when the budget runs out); the last state."""
        for _ in range(steps):
            if self.tree.deadline.passed():  # proposals on paths the tree holds cost no pass: the clock still runs
                break
            try:
                current = self.step(current)
            except BudgetSpent:
                break
            if on_state is not None:
                on_state(current)
        return current


def walk(tree: TokenTree, token_ids: list[int], island_mask: list[bool], ended_with_eos: bool) -> Node | None:
    """The complete node of a known response (a starting candidate), grown and evaluated along its path.

    None when the tree does not reproduce it (a different island, a dead end, not complete at the end).
    """
    node, i = tree.root, 0
    while i < len(token_ids):
        if island_mask[i] or node.status != "open":
            return None
        child = node.children.get(token_ids[i]) or tree.grow(node, token_ids[i])
        if child.tokens != token_ids[i:i + len(child.tokens)] or child.status == "dead":
            return None
        if tree.needs_evaluation(child):
            tree.evaluate([child])
        node, i = child, i + len(child.tokens)
    if ended_with_eos and node.status == "open":
        eos = min(tree.eos_ids)
        node = node.children.get(eos) or tree.grow(node, eos)
    return node if node.status == "complete" else None


def mcmc_search(lm: ModelBackend, prompt_ids: list[int], config: DecodeConfig, *,
                make_constraint: Callable[[], ResponseConstraint | None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                on_progress: ProgressSink | None = None,
                prefix_cache: PrefixCache | None = None) -> SearchResult:
    """Strategy `mcmc`: one chain from the greedy path, proposals at temperature 1/alpha, within the budget
    (forward passes, and config.time_limit when set).

    The answer is the chain's last state: a draw from p^alpha when the chain has mixed, not the best
    state it passed (that would be a search, and alpha would no longer say what is sampled).
    """
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    tree = TokenTree.open(lm, prompt_ids, config, make_constraint, on_progress, prefix_cache)
    budget = config.search_budget
    sampler = SuffixSampler(tree, config.alpha, 1.0 / config.alpha, generator, budget, should_stop)
    current: Node | None = None
    try:
        try:
            current = sampler.initial()
        except BudgetSpent:
            current = None
        if current is not None:
            current = sampler.run(current, STEPS_PER_PASS * budget)
    except KeyboardInterrupt:  # Ctrl-C between forward passes: the state the chain holds
        tree.interrupted = True
    if current is not None:
        return tree.result("mcmc", [current], [], interrupted=tree.interrupted)
    partial = [n for n in tree.evaluated + tree.unevaluated if n.parent is not None and n.status in ("open", "new")]
    partial.sort(key=lambda n: (-n.model_tokens, -n.mean))
    return tree.result("mcmc", [], partial[:1], interrupted=tree.interrupted)
