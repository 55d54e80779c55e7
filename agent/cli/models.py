"""`agent models` (the shipped demo model and every cached GGUF conversion) and `agent models remove`.

Nothing here imports torch or transformers: listing reads `source.json` files and safetensors headers.
"""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from agent import demo_model
from agent.cli.options import CONTEXT
from agent.model.model_cache import (
    ModelCacheError,
    conversions,
    disk_size,
    find_conversion,
    models_dir,
    remove_conversion,
)
from agent.render import plain, printable, terminal_json


def _safetensors_parameters(directory: Path) -> int | None:
    """Parameters counted from the safetensors headers (8-byte length, then JSON shapes): no weights read."""
    total = 0
    files = sorted(directory.glob("*.safetensors"))
    for file in files:
        try:
            with file.open("rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(length))
        except (OSError, ValueError, struct.error):
            return None
        for name, entry in header.items():
            if name != "__metadata__":
                count = 1
                for dim in entry.get("shape", []):
                    count *= int(dim)
                total += count
    return total if files else None


def model_entries() -> list[dict[str, Any]]:
    """The demo model (when installed), then each cached conversion: what `agent models --json` prints."""
    entries: list[dict[str, Any]] = []
    demo = demo_model.demo_model_dir()
    if (demo / "config.json").is_file():
        entries.append({"name": "demo", "hash": None, "kind": "demo", "source": "shipped with agent-shell",
                        "path": str(demo), "size_bytes": disk_size(demo),
                        "parameters": _safetensors_parameters(demo), "architecture": None, "converted_at": None})
    for conversion in conversions():
        source = conversion.source
        entries.append({"name": conversion.name, "hash": conversion.directory.name, "kind": "gguf",
                        "source": source.get("source_path"), "path": str(conversion.directory),
                        "size_bytes": disk_size(conversion.directory), "parameters": source.get("parameters"),
                        "architecture": source.get("architecture"), "converted_at": source.get("converted_at"),
                        "sha256": conversion.sha256, "source_size_bytes": source.get("file_size")})
    return entries


def _size(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # not reached


def _parameters(count: int | None) -> str:
    if not count:
        return "-"
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= scale:
            return f"{count / scale:.1f}{suffix}"
    return str(count)


def _lines(entries: list[dict[str, Any]]) -> Text:
    """One line of figures per model, its source on the line below (paths are long: a table column
    would fold them into a narrow strip)."""
    header = ("name", "hash", "parameters", "size", "converted")
    rows = [(entry["name"], entry["hash"] or "-", _parameters(entry["parameters"]), _size(entry["size_bytes"]),
             str(entry["converted_at"] or "-")[:10]) for entry in entries]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    text = Text()
    text.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip() + "\n", style="bold")
    for entry, row in zip(entries, rows):
        text.append(printable("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()) + "\n")
        text.append(printable(f"  source: {entry['source']}") + "\n", style="dim")
    return text


def _list(as_json: bool) -> None:
    entries = model_entries()
    if as_json:
        click.echo(terminal_json(entries))
        return
    console = Console(file=sys.stdout, highlight=False, soft_wrap=True)
    console.print(_lines(entries), end="")
    if not any(entry["kind"] == "gguf" for entry in entries):
        console.print(plain(f"no converted GGUF models in {models_dir()}; `agent run --model FILE.gguf` "
                            "converts one on first use"))


@click.group("models", context_settings=CONTEXT, invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON list (name, hash, kind, source, path, size_bytes, parameters, converted_at, ...).")
@click.pass_context
def models_command_group(ctx: click.Context, as_json: bool) -> None:
    """The models at hand: the shipped demo model and every GGUF file converted so far.

    A .gguf file (llama.cpp, Ollama) given to --model is converted once into a transformers model in
    the agent home (models/, one folder per file content, named by the first 16 hex digits of its
    sha256); later runs load the converted copy. Remove a conversion to free its disk space.

    \b
    Examples:
      agent models
      agent models --json
      agent run "hi" --model ~/Downloads/SmolLM2-135M-Instruct.Q4_1.gguf
      agent models remove SmolLM2-135M-Instruct.Q4_1.gguf
    """
    if ctx.invoked_subcommand is None:
        _list(as_json)


@models_command_group.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (as `agent models --json`).")
def models_list(as_json: bool) -> None:
    """List the demo model and the cached conversions (the same as `agent models`).

    \b
    Examples:
      agent models list
      agent models list --json | python -m json.tool
    """
    _list(as_json)


@models_command_group.command("remove", context_settings=CONTEXT)
@click.argument("name_or_hash")
def models_remove(name_or_hash: str) -> None:
    """Delete the cached conversion NAME_OR_HASH: its file name, or its hash (4 or more hex digits).

    Only the converted copy in the agent home is deleted, never the .gguf file itself; the next run
    with that file converts it again.

    \b
    Examples:
      agent models remove SmolLM2-135M-Instruct.Q4_1.gguf
      agent models remove b179c952
    """
    try:
        conversion = find_conversion(name_or_hash)
    except ModelCacheError as exc:
        raise click.ClickException(printable(str(exc))) from None
    size = disk_size(conversion.directory)
    try:
        remove_conversion(conversion)
    except ModelCacheError as exc:
        raise click.ClickException(printable(str(exc))) from None
    except OSError as exc:
        raise click.ClickException(printable(f"cannot remove {conversion.directory}: {exc.strerror or exc}")) from None
    click.echo(printable(f"removed {conversion.name} ({conversion.directory.name}), {_size(size)} freed"))
