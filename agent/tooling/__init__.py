"""Tools: what a tool is (`spec`), the registry of a turn's tools, running a call safely, call records.

Custom tools import the decorator from here:

    from agent.tooling import ToolFailure, tool
"""

from agent.tooling.spec import Pattern, ToolFailure, tool

__all__ = ["Pattern", "ToolFailure", "tool"]
