"""Grammars and the token-mask constraint.

`protocol` (the tool-call grammar, its parser and the one island formatter), `constraint`
(GrammarConstraint and its factory `make_constraint`), `tokenizer` (llguidance's view of a
tokenizer, byte tables, caches), `free_text` (the free-text mask cache key), `finishing`
(finishing within the token budget), `checking` (users' grammars: `agent grammar check`),
`system_prompt`, `errors`.
"""
