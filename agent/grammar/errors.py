"""GrammarError: what the grammar side raises when a grammar is invalid or a token does not fit."""


class GrammarError(ValueError):
    """A grammar is invalid, or a token was refused; says what and where."""
