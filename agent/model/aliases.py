"""Model aliases (`agent models alias NAME TARGET`): short names for a model folder, a .gguf file or a
hub id, kept in the agent home's `model_aliases.json` ({"name": "target"}) and taken by `--model`.

A folder or file of the same name in the working directory wins over an alias (as it does over
`demo`), so an alias never hides a path the user typed. Nothing here imports torch or transformers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from agent.model.model_cache import write_json
from agent.paths import agent_home

ALIAS_FILE = "model_aliases.json"
RESERVED = ("demo",)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class AliasError(ValueError):
    """An alias that cannot be made, read or removed; the message names it and what to do."""


def aliases_path() -> Path:
    return agent_home() / ALIAS_FILE


def read_aliases() -> dict[str, str]:
    """Every alias, by name (an absent file: none). AliasError for a file that is not an alias map."""
    path = aliases_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise AliasError(f"cannot read the model aliases in {path}: {exc}; fix or delete the file") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise AliasError(f"{path} is not a JSON object of alias names and targets; fix or delete the file")
    return dict(sorted(data.items()))


def check_target(target: str) -> str:
    """The target as stored: an existing folder or .gguf file as its absolute path, `demo` or a hub id
    (`org/name`) as it is. AliasError for anything else."""
    path = Path(target).expanduser()
    if path.is_dir() or (path.is_file() and path.suffix.lower() == ".gguf"):
        return str(path.resolve())
    if target in RESERVED or _HUB_ID.match(target):
        return target
    if path.suffix.lower() == ".gguf" and not path.exists():
        raise AliasError(f"no file {target}: an alias names an existing .gguf file, a model folder or a hub id")
    raise AliasError(f"{target!r} is not a model folder, a .gguf file or a hub id (org/name); nothing saved")


def set_alias(name: str, target: str) -> str:
    """Save `name` -> `target` (replacing an alias of that name); returns the target as stored."""
    if not _NAME.match(name) or name in RESERVED or name.lower().endswith(".gguf"):
        raise AliasError(f"{name!r} cannot be an alias: use letters, digits and . _ - : + (up to 64), not "
                         f"{', '.join(RESERVED)} and not a .gguf name")
    stored = check_target(target)
    aliases = read_aliases()
    aliases[name] = stored
    write_json(aliases_path(), dict(sorted(aliases.items())))
    return stored


def remove_alias(name: str) -> str:
    """Forget the alias `name`; returns what it named. AliasError when there is none."""
    aliases = read_aliases()
    if name not in aliases:
        known = ", ".join(aliases) or "none"
        raise AliasError(f"no model alias {name!r} (aliases: {known})")
    target = aliases.pop(name)
    write_json(aliases_path(), aliases)
    return target


def resolve_alias(name: str) -> str | None:
    """What the alias `name` names, None when it is not one (or a path of that name exists here)."""
    if not name or Path(name).expanduser().exists():
        return None
    return read_aliases().get(name)
