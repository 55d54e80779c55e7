"""Re-execute a stored turn (`agent replay --rerun`): the same model, history, seed and configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.config import DecodeConfig
from agent.model.runtime import LoadedModel, load_model
from agent.sessions.replay import tool_files_for_rerun
from agent.tooling.rebuild import ToolRebuild
from agent.tooling.registry import build_registry
from agent.turn import ChatSession


def rerun_turn(model_id: str, history: list[dict[str, Any]], user_text: str, config: dict[str, Any],
               tool_files: tuple[str, ...] = (), tools: ToolRebuild | None = None) -> str:
    """Re-execute one stored turn (for `agent replay --rerun`): same model, history, seed and config.

    A turn that recorded its tool sources gets each tool rebuilt from them by `tools` (agent.tooling.rebuild:
    Python files and MCP servers only as the command line gives them). An older turn recorded only its
    tool files: each is matched to one of `tool_files` (agent.sessions.replay.tool_files_for_rerun), the
    other tools are the built-in and installed ones; a file not given fails the turn.
    """
    lm = _cached_model(model_id, load_model)
    known = {k: v for k, v in config.items() if k in DecodeConfig.__dataclass_fields__}
    known.pop("grammar_hash", None)
    grammar = config.get("user_grammar")
    # Sessions stored before tool set-ups were recorded used the built-in tools.
    uses_tools = "tools" not in config or config["tools"] is not None
    registry = None
    if uses_tools and not grammar:
        sources = config.get("tool_sources")
        if sources is not None and tools is not None:
            registry = tools.registry(sources)
        else:
            registry = build_registry(tuple(tool_files_for_rerun(config.get("tool_files") or [], tool_files)))
    session = ChatSession(lm, registry, DecodeConfig(**known), user_grammar=grammar, system_prompt="")
    session.messages = [{"role": m["role"], "content": m.get("content", m.get("text", ""))} for m in history]
    return session.ask(user_text).response


_MODELS: dict[str, LoadedModel] = {}


def _cached_model(model_id: str, loader: Callable[[str], LoadedModel]) -> LoadedModel:
    if model_id not in _MODELS:
        _MODELS[model_id] = loader(model_id)
    return _MODELS[model_id]
