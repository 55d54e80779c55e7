"""agent: a terminal agent shell for local language models that searches before it speaks."""

__version__ = "0.1.0"
