"""Re-execute a stored turn (`agent replay --rerun`): the same model, history, seed and configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config import DecodeConfig
from agent.model.runtime import LoadedModel, load_model
from agent.sessions.replay import tool_files_for_rerun
from agent.tooling.registry import build_registry
from agent.turn import ChatSession


def rerun_turn(model_id: str, history: list[dict[str, Any]], user_text: str, config: dict[str, Any],
               tool_files: tuple[str, ...] = ()) -> str:
    """Re-execute one stored turn (for `agent replay --rerun`): same model, history, seed and config.

    Tool files come from `tool_files` (the command line), never from the stored config: a session
    file is data, and importing a file it names would run code it chose. Each file the turn recorded
    is matched to one given (agent.sessions.replay.tool_files_for_rerun); one not given fails the turn.
    """
    lm = _cached_model(model_id, load_model)
    known = {k: v for k, v in config.items() if k in DecodeConfig.__dataclass_fields__}
    known.pop("grammar_hash", None)
    grammar = config.get("user_grammar")
    # Sessions stored before tool set-ups were recorded used the built-in tools.
    uses_tools = "tools" not in config or config["tools"] is not None
    files = tool_files_for_rerun(config.get("tool_files") or [], tool_files)
    registry = build_registry(tuple(files)) if uses_tools and not grammar else None
    session = ChatSession(lm, registry, DecodeConfig(**known), user_grammar=grammar, system_prompt="")
    session.messages = [{"role": m["role"], "content": m.get("content", m.get("text", ""))} for m in history]
    return session.ask(user_text).response


_MODELS: dict[str, LoadedModel] = {}


def _cached_model(model_id: str, loader: Callable[[str], LoadedModel]) -> LoadedModel:
    if model_id not in _MODELS:
        _MODELS[model_id] = loader(model_id)
    return _MODELS[model_id]
