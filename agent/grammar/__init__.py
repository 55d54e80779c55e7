"""Grammars: the tool-call protocol (grammar text and parser), the token-mask constraint, grammar checks."""
