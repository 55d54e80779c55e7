"""Strategy `tree+grad`: refine the tree's best candidates with the gradient of the model's log-likelihood.

The question of seeds/thinking-machines-gradient-sampling.md: can the score function find better
responses than the first ones a search keeps? For each candidate:

1. Relax: every model token becomes a row of free logits theta (initialised from the token: most of
   the mass on it), its soft token is softmax(theta / tau) (Gumbel-softmax in the Langevin run), and
   the input embedding is the soft token times the embedding matrix. The prompt and the islands stay
   hard, fixed embeddings; tokens the grammar forbids at a position are masked out of theta.
2. Move theta to raise the expected log-likelihood of the soft sequence (sum over model positions of
   <soft token, model log-probs>, plus log p(EOS) when the answer ended there), two ways:
   Langevin steps (theta += eta * g + sqrt(2 eta) * sigma * noise) and an HMC variant (leapfrog with
   momentum, as in the seed). g is the gradient with respect to the soft tokens, standardised per
   position (mirror descent: the raw theta gradient of an off-token logit is scaled by its tiny
   softmax mass and would never move it).
3. Project back to tokens as COLD does: at each position the token with the highest theta among the
   model's top-k next tokens (from the last soft forward pass) that the grammar allows. Proposals:
   the whole projection, each of its changes alone (largest theta gain first), and the single swaps
   the gradient at the hard sequence rates best to first order (HotFlip-style). Each is replayed
   through a fresh grammar constraint; islands must come out identical.
4. Rescore every proposal exactly with agent.decoding.scoring (one full forward pass each). The best
   refined candidate replaces its parent (ranks above it) only if its exact score is higher; either
   way it is recorded with score_before, score_after, grad_steps and accepted.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from agent.config import DecodeConfig
from agent.decoding.constraint import ResponseConstraint
from agent.decoding.decode import response_text
from agent.decoding.loop_guard import model_text
from agent.decoding.results import Candidate, SearchResult, rank
from agent.decoding.scoring import ScoreParts, score_parts, sequence_logprobs
from agent.model.runtime import LoadedModel

INIT_MASS = 0.8  # share of the soft token's mass on the original token at the start
TAU = 1.0  # softmax temperature of the relaxation
STEP = 1.0  # eta: step size on the standardised gradient
NOISE = 0.1  # sigma: Langevin noise scale (and HMC momentum scale)
PROJECT_TOP_K = 5  # projection candidates per position: the model's top-k tokens
SINGLE_CHANGES = 3  # single-position proposals tried besides the full projection


@dataclass
class RefineOutcome:
    """One refinement attempt: the best projection and what it cost."""

    proposals: list[list[int]]  # projected token sequences the grammar accepts (empty: none, or unchanged)
    forward_passes: int
    backward_passes: int
    grad_steps: int
    note: str = ""


def _grammar_masks(make_constraint: Callable[[], ResponseConstraint | None] | None, token_ids: list[int],
                   island_mask: list[bool], width: int, device: torch.device) -> list[torch.Tensor] | None:
    """The grammar's allowed-token mask before each model token of the sequence (None: unconstrained)."""
    if make_constraint is None:
        return None
    constraint = make_constraint()
    if constraint is None:
        return None
    masks: list[torch.Tensor] = []
    i = 0
    while i < len(token_ids):
        if island_mask[i]:
            i += 1
            continue
        allowed = constraint.allowed_tokens()
        if allowed is None:
            allowed = torch.ones(width, dtype=torch.bool)
        allowed = allowed.to(device)[:width]
        if allowed.shape[0] < width:
            allowed = torch.cat([allowed, allowed.new_zeros(width - allowed.shape[0])])
        masks.append(allowed)
        try:
            step = constraint.accept(token_ids[i])
        except Exception:  # e.g. a side-effect call pending: the rest goes unmasked, replay_ok judges
            break
        if not step.forced_is_island:  # grammar-forced text is scored but cannot change
            for forced in step.forced_token_ids:
                only = torch.zeros(width, dtype=torch.bool, device=device)
                only[forced] = True
                masks.append(only)
        i += 1 + len(step.forced_token_ids)
    free_count = sum(1 for island in island_mask if not island)
    while len(masks) < free_count:
        masks.append(torch.ones(width, dtype=torch.bool, device=device))
    return masks


def replay_ok(make_constraint: Callable[[], ResponseConstraint | None] | None, token_ids: list[int],
              island_mask: list[bool]) -> tuple[bool, ResponseConstraint | None]:
    """Does a fresh constraint accept these model tokens and force exactly these islands? (ok, constraint)"""
    if make_constraint is None:
        return True, None
    constraint = make_constraint()
    if constraint is None:
        return True, None
    i = 0
    while i < len(token_ids):
        if island_mask[i]:
            return False, None  # an island where the grammar forced none
        allowed = constraint.allowed_tokens()
        if allowed is not None and (token_ids[i] >= allowed.shape[0] or not bool(allowed[token_ids[i]])):
            return False, None
        try:
            step = constraint.accept(token_ids[i])
        except Exception:  # the grammar refused
            return False, None
        forced = list(step.forced_token_ids)
        i += 1
        if forced:
            if token_ids[i:i + len(forced)] != forced:
                return False, None
            i += len(forced)
    return True, constraint


def refine_tokens(
    lm: LoadedModel,
    prompt_ids: list[int],
    token_ids: list[int],
    island_mask: list[bool],
    *,
    steps: int,
    method: str = "langevin",
    ended_with_eos: bool = False,
    make_constraint: Callable[[], ResponseConstraint | None] | None = None,
    generator: torch.Generator | None = None,
) -> RefineOutcome:
    """Run `steps` gradient steps (method "langevin" or "hmc") on the relaxed response; project to tokens."""
    model = lm.model
    embed = model.get_input_embeddings().weight.detach()
    vocab = embed.shape[0]
    device = embed.device
    free = [j for j, island in enumerate(island_mask) if not island]
    if not free or steps <= 0:
        return RefineOutcome([], 0, 0, 0, "nothing to refine")
    masks = _grammar_masks(make_constraint, token_ids, island_mask, vocab, device)
    allowed = torch.stack(masks) if masks is not None else torch.ones(len(free), vocab, dtype=torch.bool,
                                                                         device=device)
    free_ids = torch.tensor([token_ids[j] for j in free], device=device)
    allowed[torch.arange(len(free), device=device), free_ids] = True  # the original token stays possible
    init = math.log(INIT_MASS * (vocab - 1) / (1 - INIT_MASS))
    theta = torch.zeros(len(free), vocab, device=device, dtype=torch.float32)
    theta[torch.arange(len(free), device=device), free_ids] = init
    theta = theta.masked_fill(~allowed, float("-inf"))
    prompt_emb = embed[torch.tensor(prompt_ids, device=device)]
    all_ids = torch.tensor(token_ids, device=device)
    fixed_emb = embed[all_ids]
    free_index = torch.tensor(free, device=device)
    eos_id = min(lm.eos_token_ids) if (ended_with_eos and lm.eos_token_ids) else None
    start = len(prompt_ids) - 1
    passes = {"forward": 0, "backward": 0}
    last_logp: dict[str, torch.Tensor] = {}
    gumbel = method == "langevin"

    def objective_grad(th: torch.Tensor) -> torch.Tensor:
        """Ascent direction for theta: the gradient with respect to the soft tokens, standardised.

        d objective / d soft[j, v] says how much putting token v at position j would raise the
        expected log-likelihood (its own log-prob plus its effect on the rest through the embedding).
        The raw gradient with respect to theta is that times soft[j, v], almost zero off the current
        token; using the soft-token gradient (mirror descent on the simplex), centred and scaled per
        position, lets the alternatives move.
        """
        logits_in = th
        if gumbel and generator is not None:
            u = torch.rand(th.shape, generator=generator).clamp_(1e-12, 1.0).to(device)
            logits_in = th + NOISE * (-torch.log(-torch.log(u)))
        with torch.enable_grad():
            soft = torch.softmax(logits_in.float() / TAU, dim=-1)
            soft = torch.nan_to_num(soft, nan=0.0).detach().requires_grad_(True)
            resp_emb = fixed_emb.float().index_copy(0, free_index, soft @ embed.float())
            inputs = torch.cat([prompt_emb.float(), resp_emb], dim=0).unsqueeze(0).to(embed.dtype)
            logits = model(inputs_embeds=inputs).logits[0].float()
            logp = torch.log_softmax(logits, dim=-1)
            pred = logp[start + free_index]  # predictions for the free positions
            objective = (soft * pred.masked_fill(~allowed, 0.0)).sum()
            if eos_id is not None:
                objective = objective + logp[start + len(token_ids), eos_id]
            (grad,) = torch.autograd.grad(objective, soft)
        passes["forward"] += 1
        passes["backward"] += 1
        last_logp["pred"] = pred.detach()
        if "first_grad" not in last_logp:  # at the hard sequence: ranks single swaps (HotFlip-style)
            last_logp["first_pred"] = pred.detach()
            last_logp["first_grad"] = torch.nan_to_num(grad.detach(), nan=0.0, posinf=0.0, neginf=0.0)
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0).masked_fill(~allowed, 0.0)
        count = allowed.sum(dim=-1, keepdim=True).clamp(min=1)
        mean = grad.sum(dim=-1, keepdim=True) / count
        centred = (grad - mean).masked_fill(~allowed, 0.0)
        std = (centred.pow(2).sum(dim=-1, keepdim=True) / count).sqrt()
        return centred / (std + 1e-8)

    steps_done = 0
    if method == "hmc":
        momentum = NOISE * torch.randn(theta.shape, generator=generator).to(device)
        grad = objective_grad(theta)
        steps_done += 1
        while steps_done < steps:
            momentum = momentum + 0.5 * STEP * grad
            theta = theta + STEP * momentum
            grad = objective_grad(theta)
            steps_done += 1
            momentum = momentum + 0.5 * STEP * grad
    else:
        for _ in range(steps):
            grad = objective_grad(theta)
            steps_done += 1
            noise = torch.randn(theta.shape, generator=generator).to(device)
            theta = theta + STEP * grad + math.sqrt(2 * STEP) * NOISE * noise
    theta = theta.masked_fill(~allowed, float("-inf"))
    # Projection (COLD): the best-theta token among the model's top-k that the grammar allows.
    pred = last_logp["pred"].masked_fill(~allowed, float("-inf"))
    k = min(PROJECT_TOP_K, vocab)
    top = torch.topk(pred, k, dim=-1).indices
    choice_scores = torch.gather(theta, 1, top)
    projected = torch.gather(top, 1, choice_scores.argmax(dim=-1, keepdim=True)).squeeze(1)
    changes = [(k, j, int(t)) for k, (j, t) in enumerate(zip(free, projected.tolist(), strict=True))
               if int(t) != token_ids[j]]
    swaps = _first_order_swaps(last_logp["first_grad"], last_logp["first_pred"], allowed, free, token_ids)
    if not changes and not swaps:
        return RefineOutcome([], passes["forward"], passes["backward"], steps_done, "projection unchanged")
    # Proposals: the whole projection, and each single change alone (largest theta gain first), so a
    # gradient that is right about one position is not spoiled by being wrong about another.
    full = list(token_ids)
    for _, j, t in changes:
        full[j] = t
    proposals = [full]
    gain = sorted(changes, key=lambda c: -float(theta[c[0], c[2]] - theta[c[0], token_ids[c[1]]]))
    for _, j, t in gain[:SINGLE_CHANGES]:
        single = list(token_ids)
        single[j] = t
        if single not in proposals:
            proposals.append(single)
    if not changes:
        proposals = []
    for j, t in swaps:
        single = list(token_ids)
        single[j] = t
        if single not in proposals:
            proposals.append(single)
    valid = [ids for ids in proposals if replay_ok(make_constraint, ids, island_mask)[0]]
    note = "" if valid else "grammar rejected"
    return RefineOutcome(valid, passes["forward"], passes["backward"], steps_done, note)


def _first_order_swaps(grad: torch.Tensor, pred: torch.Tensor, allowed: torch.Tensor, free: list[int],
                       token_ids: list[int]) -> list[tuple[int, int]]:
    """Single-token swaps the gradient at the hard sequence rates best (first-order gain, HotFlip-style).

    Only the model's top-k tokens at each position are considered, as in the projection.
    """
    k = min(PROJECT_TOP_K, pred.shape[-1])
    top = torch.topk(pred.masked_fill(~allowed, float("-inf")), k, dim=-1).indices
    current = torch.tensor([token_ids[j] for j in free], device=grad.device)
    gain = torch.gather(grad, 1, top) - grad.gather(1, current.unsqueeze(1))
    gain = gain.masked_fill(top == current.unsqueeze(1), float("-inf"))
    flat = torch.topk(gain.flatten(), min(SINGLE_CHANGES, gain.numel()))
    swaps = []
    for value, index in zip(flat.values.tolist(), flat.indices.tolist(), strict=True):
        if value == float("-inf"):
            continue
        row, col = divmod(index, k)
        swaps.append((free[row], int(top[row, col])))
    return swaps


def refine_result(
    lm: LoadedModel,
    prompt_ids: list[int],
    config: DecodeConfig,
    result: SearchResult,
    *,
    make_constraint: Callable[[], ResponseConstraint | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SearchResult:
    """Refine the top candidates (Langevin and HMC, config.grad_steps each); keep improvements only.

    Returns a new SearchResult; `result` and its candidates are left as they were.
    """
    started = time.perf_counter()
    generator = torch.Generator(device="cpu").manual_seed(config.seed + 1)
    forward_passes, backward_passes = result.forward_passes, result.backward_passes
    originals = list(result.candidates[: max(1, config.top_candidates)])
    refined: list[tuple[int, Candidate]] = []  # (index of the parent in originals, refined candidate)
    gains: list[float] = []
    tried = improved = 0
    for parent_index, cand in enumerate(originals):
        if should_stop is not None and should_stop():
            break
        if cand.new_tokens == 0 or cand.empty or cand.finish_reason in ("interrupted", "budget"):
            continue
        tried += 1
        ended = cand.eos_logprob is not None
        best_ids: list[int] | None = None
        best_parts: ScoreParts | None = None
        best_lps: list[float] = []
        best_eos: float | None = None
        seen: set[tuple[int, ...]] = set()  # proposals already rescored (the two runs often agree)
        steps_total = 0
        for method in ("langevin", "hmc"):
            outcome = refine_tokens(lm, prompt_ids, cand.token_ids, cand.island_mask, steps=config.grad_steps,
                                    method=method, ended_with_eos=ended, make_constraint=make_constraint,
                                    generator=generator)
            forward_passes += outcome.forward_passes
            backward_passes += outcome.backward_passes
            steps_total += outcome.grad_steps
            for proposal in outcome.proposals:
                if tuple(proposal) in seen:
                    continue
                seen.add(tuple(proposal))
                text = response_text(lm.tokenizer, proposal, keep_special=any(cand.island_mask))
                lps, eos_lp = sequence_logprobs(lm, prompt_ids, proposal,
                                                eos_id=min(lm.eos_token_ids) if ended else None)
                lps = [0.0 if island else lp for lp, island in zip(lps, cand.island_mask, strict=False)]
                parts = score_parts(lps, cand.island_mask, proposal, eos_logprob=eos_lp, text=text,
                                    loop_text=model_text(lm.tokenizer, proposal, cand.island_mask))
                forward_passes += 1
                if best_parts is None or parts.value > best_parts.value:
                    best_ids, best_parts, best_lps, best_eos = proposal, parts, lps, eos_lp
        if best_ids is None or best_parts is None:
            originals[parent_index] = dataclasses.replace(cand, score_before=cand.score, score_after=cand.score,
                                                          grad_steps=steps_total, accepted=False)
            gains.append(0.0)
            continue
        accepted = best_parts.value > cand.score
        gain = best_parts.value - cand.score
        gains.append(max(gain, 0.0))
        if accepted:
            improved += 1
        text = response_text(lm.tokenizer, best_ids, keep_special=any(cand.island_mask))
        refined.append((parent_index, Candidate(
            text=text, token_ids=best_ids, island_mask=list(cand.island_mask), logprobs=best_lps,
            score=best_parts.value, tool_calls=list(cand.tool_calls), strategy="tree+grad",
            parent=parent_index, refined=True, score_before=cand.score, score_after=best_parts.value,
            grad_steps=steps_total, accepted=accepted, finish_reason=cand.finish_reason,
            eos_logprob=best_eos,
            empty=best_parts.empty, degenerate=best_parts.degenerate, constraint=cand.constraint,
        )))
    # A refined candidate outranks its parent only when its exact score is higher; rejected ones are
    # kept for /alts but can never become the answer.
    # A refinement that lands on an answer the tree already had counts as an improvement of its
    # parent, but it is listed after the ranking so the answer is not shown twice as two candidates.
    known = {tuple(c.token_ids) for c in originals}

    def is_new_answer(candidate: Candidate) -> bool:
        return bool(candidate.accepted) and tuple(candidate.token_ids) not in known

    accepted_ones = [c for _, c in refined if is_new_answer(c)]
    others = [c for _, c in refined if not is_new_answer(c)]
    ranked = rank(originals + accepted_ones) + rank(others)
    # Parents are indices into the candidate list as finally ordered (the refined ones are ours to set).
    for parent_index, c in refined:
        c.parent = next(i for i, x in enumerate(ranked) if x is originals[parent_index])
    refinement = {
        "tried": tried,
        "improved": improved,
        "mean_gain": round(sum(gains) / len(gains), 6) if gains else 0.0,
    }
    return dataclasses.replace(result, best=ranked[0], candidates=ranked, forward_passes=forward_passes,
                               backward_passes=backward_passes, refinement=refinement, strategy="tree+grad",
                               seconds=result.seconds + time.perf_counter() - started)
