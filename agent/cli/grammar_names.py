"""The grammars shipped in `agent.grammars`, by name: `--grammar json`, `agent grammar list`.

`protocol.lark` ships too, but it is the template of the tool-call protocol that each turn completes
with the registered tools, not a grammar for `--grammar`: it is not listed, and naming it is explained.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TEMPLATES = ("protocol",)  # shipped .lark files that are not user grammars
TEMPLATE_NOTE = ("is the template of the tool-call protocol, not a grammar for --grammar: each turn completes it "
                 "with the registered tools (agent.protocol.build_turn_grammar), so on its own it does not "
                 "check; see `agent grammar list` for the shipped grammars")


def _shipped_dir() -> Path:
    return Path(str(resources.files("agent.grammars")))


def shipped() -> dict[str, Path]:
    """The user grammars that ship with agent: name -> file, sorted by name (templates left out)."""
    files = sorted(_shipped_dir().glob("*.lark"))
    return {f.stem: f for f in files if f.stem not in TEMPLATES}


def description(path: Path) -> str:
    """The first line of the grammar's leading comment (what it is for), without the `//`."""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith("//"):
            return text.lstrip("/").strip()
        if text:
            break
    return ""


def resolve_grammar(value: str) -> Path:
    """The file `--grammar VALUE` means: an existing file as given, else a shipped grammar's name
    (`json`, `yes_no`) or template's; anything else is returned as given (reading it then names the
    missing file)."""
    path = Path(value).expanduser()
    if path.exists():
        return path
    if value in TEMPLATES:
        return _shipped_dir() / f"{value}.lark"  # so that naming it is explained, not "no such file"
    return shipped().get(value, path)


def is_template(path: Path) -> bool:
    """Whether `path` is a shipped template (or a copy of one, e.g. grammars/protocol.lark in a checkout)."""
    try:
        text = path.read_bytes()
    except OSError:
        return False
    return any((_shipped_dir() / f"{name}.lark").read_bytes() == text for name in TEMPLATES)
