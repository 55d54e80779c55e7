"""Single-token Metropolis-Hastings moves on a whole response, for the target p(x)^alpha.

The target is the one of agent.decoding.mcmc: log p(x) sums the model's log-probs of its own tokens
(grammar-forced text included, EOS when the response ended with it, islands excluded), restricted to
responses the grammar accepts with exactly the same islands and without a loop the tree would refuse
(agent.decoding.loop_guard, checked after every sampled token as the tree does).
A move changes one model token; the length, the islands and the way the response ends stay as they
are, so these chains sample p^alpha within the responses of the starting one's shape.

Two proposals over (position j, token v), each computed at the current sequence and, for the
reverse move, at the proposed one, so the acceptance is exact:
- `gradient` (Gibbs-with-Gradients, Grathwohl et al. 2021): with g = d(alpha log p)/d onehot(x),
  q(j, v | x) = softmax over all allowed (j, v != x_j) of (g[j, v] - g[j, x_j]) / 2, the first-order
  estimate of the change of the log target. One forward and one backward pass per proposal.
- `model` (gradient-free): j uniform among the positions that can change, v from the model's own
  next-token distribution at j (grammar mask, temperature `temperature`, the current token
  excluded). One forward pass per proposal.
Grammar masks at each position come from replaying the sequence through a fresh constraint: a
change at j leaves the masks before j as they were, and the reverse proposal uses the proposed
sequence's own masks. A proposal the grammar refuses, that changes an island, or that loops has
target 0 and is rejected.
The prompt's KV (all but its last token) is computed once; `forward_tokens` and `backward_tokens`
count the response tokens run through the model (for comparing compute across samplers).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from agent.decoding.constraint import ResponseConstraint
from agent.decoding.kv_cache import crop_cache
from agent.decoding.loop_guard import TAIL_TOKENS, ends_in_loop, model_text
from agent.model.runtime import LoadedModel

MOVES = ("gradient", "model")
MEMO_SIZE = 4096  # evaluations remembered by sequence (a rejected proposal is often proposed again)


@dataclass
class Evaluation:
    """One response run through the model: its log p, next-token log-probs and masks (and gradient)."""

    ids: tuple[int, ...]
    log_p: float
    next_logprobs: torch.Tensor  # [L, V]: log p( . | x_<j) at each response position j
    allowed: torch.Tensor  # [L, V] bool: what may stand at j (False everywhere on fixed positions)
    grad: torch.Tensor | None = None  # [L, V]: d log p / d onehot(x)
    tables: dict[str, torch.Tensor] = field(default_factory=dict)  # proposal log-probs by move


@dataclass
class MoveStats:
    proposals: int = 0
    accepted: int = 0
    invalid: int = 0  # proposals outside the target's support (grammar, islands, loop)

    @property
    def acceptance(self) -> float:
        return self.accepted / self.proposals if self.proposals else 0.0


class SequenceScorer:
    """Runs responses of one prompt through the model on a cached prompt; checks them against the grammar."""

    def __init__(self, lm: LoadedModel, prompt_ids: list[int], island_mask: list[bool], *, ended_with_eos: bool,
                 make_constraint: Callable[[], ResponseConstraint | None] | None = None,
                 max_new_tokens: int | None = None) -> None:
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        self.lm = lm
        self.island_mask = list(island_mask)
        self.ended_with_eos = ended_with_eos
        self.make_constraint = make_constraint
        self.max_new_tokens = max_new_tokens
        self.eos_ids = sorted(lm.eos_token_ids)
        self.width = lm.vocab_size
        self.last_prompt = prompt_ids[-1]
        self.cache = DynamicCache()
        self.prefix = len(prompt_ids) - 1
        if self.prefix:
            with torch.inference_mode():
                lm.run(self.cache, input_ids=torch.tensor([prompt_ids[:-1]], device=lm.device))
        self.forward_tokens = 0
        self.backward_tokens = 0
        self._memo: dict[tuple[int, ...], Evaluation] = {}

    # -- the grammar -----------------------------------------------------------------------------
    def masks(self, ids: list[int]) -> torch.Tensor | None:
        """[L, V] what may stand at each position, or None when the sequence is outside the target's support."""
        length = len(ids)
        allowed = torch.zeros(length, self.width, dtype=torch.bool)
        if length != len(self.island_mask):
            return None
        constraint = self.make_constraint() if self.make_constraint is not None else None
        if constraint is None:
            for j in range(length):
                if not self.island_mask[j]:
                    allowed[j] = True
                    allowed[j, self.eos_ids] = False
                if self._loops(ids, j + 1):
                    return None
            return allowed
        model_count, j = 0, 0
        while j < length:
            if self.island_mask[j]:
                return None  # an island where the grammar forced none
            if self.max_new_tokens is not None:
                constraint.set_tokens_left(self.max_new_tokens - model_count)
            mask = constraint.allowed_tokens()
            row = torch.ones(self.width, dtype=torch.bool) if mask is None else _fit(mask.cpu(), self.width)
            row[self.eos_ids] = False
            if not bool(row[ids[j]]):
                return None
            allowed[j] = row
            try:
                step = constraint.accept(ids[j])
            except Exception:  # the grammar refused (constraints raise their own types)
                return None
            model_count += 1
            forced = list(step.forced_token_ids)
            if ids[j + 1:j + 1 + len(forced)] != forced:
                return None
            if any(self.island_mask[j + 1 + k] != step.forced_is_island for k in range(len(forced))):
                return None
            if not step.forced_is_island:
                model_count += len(forced)  # grammar-forced text: scored, never changed
            j += 1 + len(forced)
            if self._loops(ids, j):
                return None
        if self.max_new_tokens is not None:
            constraint.set_tokens_left(self.max_new_tokens - model_count)
        end = constraint.allowed_tokens()
        eos_allowed = end is None or any(e < end.shape[0] and bool(end[e]) for e in self.eos_ids)
        if self.ended_with_eos and not eos_allowed:
            return None
        if not self.ended_with_eos and not (constraint.is_finished() or eos_allowed):
            return None
        return allowed

    def _loops(self, ids: list[int], end: int) -> bool:
        """Does the response up to `end` end in a loop? The token tree's check, made where it makes it
        (after each sampled token and what was forced after it), so both samplers have one support."""
        return ends_in_loop(model_text(self.lm.tokenizer, ids[:end], self.island_mask[:end], tail_tokens=TAIL_TOKENS))

    # -- the model -------------------------------------------------------------------------------
    def evaluate(self, ids: list[int], grad: bool = False) -> Evaluation | None:
        """log p of the response (and its gradient); None when it is outside the target's support."""
        key = tuple(ids)
        known = self._memo.get(key)
        if known is not None and (known.grad is not None or not grad):
            return known
        allowed = self.masks(list(ids))
        if allowed is None:
            return None
        model = self.lm.model
        embed = model.get_input_embeddings().weight
        device = embed.device
        targets = torch.tensor(ids, dtype=torch.long, device=device)
        own = torch.tensor([not island for island in self.island_mask], device=device)
        onehot: torch.Tensor | None = None
        with torch.enable_grad() if grad else torch.inference_mode():
            if grad:
                onehot = torch.zeros(len(ids), embed.shape[0], device=device, dtype=embed.dtype)
                onehot[torch.arange(len(ids), device=device), targets] = 1.0
                onehot.requires_grad_(True)
                inputs = torch.cat([embed[self.last_prompt].detach().unsqueeze(0), onehot @ embed.detach()])
                out = self.lm.run(self.cache, inputs_embeds=inputs.unsqueeze(0))
            else:
                row = torch.tensor([[self.last_prompt, *ids]], dtype=torch.long, device=device)
                out = self.lm.run(self.cache, input_ids=row)
            logp = torch.log_softmax(out.logits[0].float(), dim=-1)
            if onehot is not None:  # x enters as the predicted token too: <onehot_j, log p( . | x_<j)>
                per_token = (onehot.float() * logp[:len(ids)]).sum(dim=-1)
            else:
                per_token = logp[torch.arange(len(ids), device=device), targets]
            total = (per_token * own).sum()
            if self.ended_with_eos:
                total = total + logp[len(ids), self.eos_ids[0]]
            gradient = torch.autograd.grad(total, onehot)[0].float().cpu() if onehot is not None else None
        crop_cache(self.cache, self.prefix)
        self.forward_tokens += len(ids) + 1
        if grad:
            self.backward_tokens += len(ids) + 1
        evaluation = Evaluation(key, float(total.detach()), logp[:len(ids)].detach().cpu(), allowed, gradient)
        if len(self._memo) >= MEMO_SIZE:
            self._memo.pop(next(iter(self._memo)))
        self._memo[key] = evaluation
        return evaluation


def _fit(mask: torch.Tensor, width: int) -> torch.Tensor:
    """A grammar mask cut or padded (with False) to the logits' width."""
    mask = mask[:width].clone()
    if mask.shape[0] < width:
        mask = torch.cat([mask, mask.new_zeros(width - mask.shape[0])])
    return mask


def proposal_table(ev: Evaluation, move: str, alpha: float, temperature: float) -> torch.Tensor:
    """[L, V] log q(j, v | x) over single-token changes (-inf where no change is proposed)."""
    if move in ev.tables:
        return ev.tables[move]
    current = torch.tensor(ev.ids, dtype=torch.long).unsqueeze(1)
    candidates = ev.allowed.clone()
    candidates.scatter_(1, current, False)  # a move changes the token
    if move == "gradient":
        assert ev.grad is not None, "the gradient move needs an evaluation with its gradient"
        g = alpha * ev.grad
        scores = (g - g.gather(1, current)) / 2
        scores = scores.masked_fill(~candidates, float("-inf"))
        table = torch.log_softmax(scores.flatten(), dim=0).view_as(scores)
    elif move == "model":
        rows = candidates.any(dim=1)
        count = int(rows.sum())
        scores = (ev.next_logprobs / temperature).masked_fill(~candidates, float("-inf"))
        table = torch.full_like(scores, float("-inf"))
        if count:
            table[rows] = torch.log_softmax(scores[rows], dim=1) - math.log(count)
    else:
        raise ValueError(f"unknown move {move!r}; choose one of {', '.join(MOVES)}")
    ev.tables[move] = table
    return table


def move_step(scorer: SequenceScorer, current: Evaluation, move: str, alpha: float, temperature: float,
              generator: torch.Generator, stats: MoveStats) -> Evaluation:
    """One Metropolis-Hastings step with a single-token proposal; the next state (current when rejected)."""
    table = proposal_table(current, move, alpha, temperature)
    flat = table.flatten()
    if not bool(torch.isfinite(flat).any()):
        return current  # nothing can change
    stats.proposals += 1
    index = int(torch.multinomial(flat.exp(), 1, generator=generator))
    j, v = divmod(index, table.shape[1])
    ids = list(current.ids)
    old = ids[j]
    ids[j] = v
    proposed = scorer.evaluate(ids, grad=move == "gradient")
    if proposed is None:
        stats.invalid += 1
        return current
    reverse = float(proposal_table(proposed, move, alpha, temperature)[j, old])
    log_ratio = alpha * (proposed.log_p - current.log_p) + reverse - float(table[j, v])
    u = float(torch.rand((), generator=generator).clamp(1e-12, 1.0))
    if math.log(u) < log_ratio:
        stats.accepted += 1
        return proposed
    return current
