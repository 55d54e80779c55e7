"""Lark grammars shipped with the shell (read with importlib.resources)."""
