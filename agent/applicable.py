"""Which decoding options a strategy uses: an option given for a strategy that ignores it is a
mistake the user should hear about (an error on the command line, a warning line in the REPL)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from agent.config import DecodeConfig

if TYPE_CHECKING:
    from agent.tooling.registry import ToolRegistry

SAMPLING = ("temperature", "top_k", "top_p", "min_p")

# strategy -> the DecodeConfig fields it never reads (greedy takes the argmax: no sampling, no search
# budget; sample is one pass of the decode loop: no search budget; beam keeps the top log-probs as they
# are: no sampling). best-of-n, tree and tree+grad read them all (tree: temperature anneals the noise)
# but alpha, which only mcmc reads.
# The search limits (budget, time_limit, kv_budget_bytes) bound a search's token tree: the single-pass
# strategies stream one answer and stop at max_new_tokens or Ctrl-C.
LIMITS = ("budget", "time_limit", "kv_budget_bytes")
IGNORED: dict[str, tuple[str, ...]] = {
    "greedy": (*SAMPLING, *LIMITS, "alpha"),
    "sample": (*LIMITS, "alpha"),
    "beam": (*SAMPLING, "alpha"),
    "best-of-n": ("alpha",),
    "tree": ("alpha",),
    "tree+grad": ("alpha",),
    # mcmc proposes at temperature 1/alpha from the untruncated, grammar-masked model distribution
    "mcmc": (*SAMPLING, "repetition_penalty", "ground_numbers"),
}


def not_applying(strategy: str, names: Iterable[str]) -> list[str]:
    """The option names among `names` (DecodeConfig field names) that `strategy` does not use."""
    ignored = IGNORED.get(strategy, ())
    return [name for name in names if name in ignored]


def explain(strategy: str, names: Iterable[str], *, flags: bool) -> str | None:
    """A one-line message for the options `strategy` ignores, None when all apply. `flags`: name them
    as command-line options (--top-k) rather than settings (top_k)."""
    found = not_applying(strategy, names)
    if not found:
        return None
    shown = ", ".join(f"--{n.replace('_', '-')}" if flags else n for n in found)
    verb = "does" if len(found) == 1 else "do"
    hint = "--strategy sample" if flags else "/set strategy=sample"
    if all(n in LIMITS for n in found):
        hint = "--strategy tree" if flags else "/set strategy=tree"
    return f"{shown} {verb} not apply to the {strategy} strategy (it ignores {'it' if len(found) == 1 else 'them'}); " \
           f"choose a strategy that uses {'it' if len(found) == 1 else 'them'}, e.g. {hint}"


def setting_warning(config: DecodeConfig, name: str) -> str | None:
    """The REPL's warning line after `/set NAME=...` left `config`: the setting just made does not apply
    to the strategy, or (after `/set strategy=...`) settings changed from their defaults no longer do.
    None when everything set applies."""
    key = name.strip().replace("-", "_")
    if key == "strategy":
        default = DecodeConfig()
        names = [n for n in IGNORED.get(config.strategy, ()) if getattr(config, n) != getattr(default, n)]
    else:
        names = [key]
    return explain(config.strategy, names, flags=False)


def tool_choice_problem(tool_choice: str, registry: ToolRegistry | None) -> str | None:
    """Why a tool choice cannot hold with these tools (None when it can): a call required without
    tools, or a name that is not a registered tool."""
    if tool_choice == "auto":
        return None
    if registry is None:
        return f"tool choice {tool_choice!r} needs tools, and there are none (--no-tools or --grammar)"
    if tool_choice not in ("required", "none") and tool_choice not in registry:
        return (f"tool choice {tool_choice!r} is not a registered tool; choose auto, required, none or one of: "
                f"{', '.join(registry.names())}")
    return None
