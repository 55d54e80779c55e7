"""`agent models`: list (the demo model, cached GGUF conversions, the Hugging Face cache, aliased folders),
show NAME, alias NAME TARGET, remove NAME.

Nothing here imports torch or transformers: listing reads `source.json` files and safetensors headers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.text import Text

from agent import demo_model
from agent.cli.options import CONTEXT
from agent.model.aliases import AliasError, read_aliases, remove_alias, resolve_alias, set_alias
from agent.model.model_cache import (
    ModelCacheError,
    conversions,
    disk_size,
    find_conversion,
    models_dir,
    remove_conversion,
)
from agent.model_info import count, describe_source, info_text, safetensors_parameters
from agent.render import model_label, plain, printable, terminal_json


def _hub_models() -> list[dict[str, Any]]:
    """The models in the local Hugging Face cache (what `--model org/name` loads offline), newest revision."""
    # huggingface_hub takes a third of a second to import: only when the models are listed
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        cache = scan_cache_dir()
    except CacheNotFound:
        return []
    except OSError as exc:
        click.echo(printable(f"warning: cannot read the Hugging Face cache: {exc}"), err=True)
        return []
    entries = []
    for repo in sorted(cache.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revision = next((r for r in repo.revisions if "main" in r.refs),
                        max(repo.revisions, key=lambda r: r.last_modified))
        entries.append({"name": repo.repo_id, "hash": revision.commit_hash[:16], "kind": "hf-cache",
                        "source": "Hugging Face cache", "path": str(revision.snapshot_path),
                        "size_bytes": repo.size_on_disk, "parameters": safetensors_parameters(revision.snapshot_path),
                        "architecture": None, "converted_at": None})
    return entries


def model_entries() -> list[dict[str, Any]]:
    """The demo model (when installed), each cached conversion, each model in the Hugging Face cache and
    each aliased folder listed nowhere else; `aliases` names the aliases of each. What `--json` prints."""
    entries: list[dict[str, Any]] = []
    demo = demo_model.demo_model_dir()
    if (demo / "config.json").is_file():
        entries.append({"name": "demo", "hash": None, "kind": "demo", "source": "shipped with agent-shell",
                        "path": str(demo), "size_bytes": disk_size(demo),
                        "parameters": safetensors_parameters(demo), "architecture": None, "converted_at": None})
    for conversion in conversions():
        source = conversion.source
        entries.append({"name": conversion.name, "hash": conversion.directory.name, "kind": "gguf",
                        "source": source.get("source_path"), "path": str(conversion.directory),
                        "size_bytes": disk_size(conversion.directory), "parameters": source.get("parameters"),
                        "architecture": source.get("architecture"), "converted_at": source.get("converted_at"),
                        "sha256": conversion.sha256, "source_size_bytes": source.get("file_size")})
    entries += _hub_models()
    for entry in entries:
        entry["aliases"] = []
    for alias, target in read_aliases().items():
        entry = next((e for e in entries if _names(e, target)), None)
        if entry is None:
            folder = Path(target)
            entry = {"name": model_label(target), "hash": None, "kind": "folder" if folder.is_dir() else "missing",
                     "source": target, "path": target, "size_bytes": disk_size(folder) if folder.is_dir() else None,
                     "parameters": safetensors_parameters(folder) if folder.is_dir() else None,
                     "architecture": None, "converted_at": None, "aliases": []}
            entries.append(entry)
        entry["aliases"].append(alias)
    return entries


def _names(entry: dict[str, Any], target: str) -> bool:
    """Whether an alias's target is this listed model (by name, folder, or the .gguf file converted)."""
    return target in (entry["name"], entry["path"]) or (entry["kind"] == "gguf" and target == entry["source"])


def _size(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"  # not reached


def _lines(entries: list[dict[str, Any]]) -> Text:
    """One line of figures per model, its source on the line below (paths are long: a table column
    would fold them into a narrow strip)."""
    header = ("name", "kind", "hash", "parameters", "size", "converted")
    rows = [(entry["name"], entry["kind"], entry["hash"] or "-", count(entry["parameters"]),
             _size(entry["size_bytes"]), str(entry["converted_at"] or "-")[:10]) for entry in entries]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    text = Text()
    text.append("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip() + "\n", style="bold")
    for entry, row in zip(entries, rows):
        text.append(printable("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip()) + "\n")
        aliases = f" · aliases: {', '.join(entry['aliases'])}" if entry["aliases"] else ""
        text.append(printable(f"  source: {entry['source']}{aliases}") + "\n", style="dim")
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
    """The models at hand: the shipped demo model, every GGUF file converted so far, the models in the
    local Hugging Face cache, and the folders that have an alias.

    A .gguf file (llama.cpp, Ollama) given to --model is converted once into a transformers model in
    the agent home (models/, one folder per file content, named by the first 16 hex digits of its
    sha256); later runs load the converted copy. Remove a conversion to free its disk space. An alias
    (`agent models alias NAME TARGET`) is a short name --model takes.

    \b
    Examples:
      agent models
      agent models --json
      agent models show demo
      agent models alias qwen ~/models/qwen2.5-0.5b-instruct
      agent run "hi" --model qwen
      agent run "hi" --model ~/Downloads/SmolLM2-135M-Instruct.Q4_1.gguf
      agent models remove SmolLM2-135M-Instruct.Q4_1.gguf
    """
    if ctx.invoked_subcommand is None:
        _list(as_json)


@models_command_group.command("list", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list (as `agent models --json`).")
def models_list(as_json: bool) -> None:
    """List the demo model, the cached conversions, the Hugging Face cache and aliased folders (as `agent models`).

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


def locate(name: str) -> tuple[str, Path | None]:
    """Where NAME's files are: (what transformers loads, the folder to count parameters in; None for a hub
    id read through the cache). An alias, `demo`, a folder, a .gguf file already converted or a cached
    conversion's name, or a hub id in the local cache. ClickException naming what was tried."""
    try:
        target = resolve_alias(name) or name
    except AliasError as exc:
        raise click.ClickException(printable(str(exc))) from None
    path = Path(target).expanduser()
    if target == "demo" and not path.exists():
        path = demo_model.demo_model_dir()
    if path.is_dir():
        return str(path.resolve()), path.resolve()
    if path.suffix.lower() == ".gguf" and path.is_file():
        for conversion in conversions():
            if conversion.source.get("source_path") == str(path.resolve()):
                return str(conversion.directory), conversion.directory
        raise click.ClickException(printable(f"{path} is not converted yet: `agent run --model {path} ...` "
                                             "converts it once, then `agent models show` reads it"))
    try:
        conversion = find_conversion(target)
        return str(conversion.directory), conversion.directory
    except ModelCacheError:
        pass
    # huggingface_hub takes a third of a second to import: only for a name that may be a hub id
    from huggingface_hub import snapshot_download

    try:
        snapshot = Path(snapshot_download(target, local_files_only=True))
    except Exception:  # not a valid id, or not in the cache: both mean "no such model here"
        raise click.ClickException(printable(
            f"no model {name!r}: not an alias, a model folder, a converted .gguf file or a model in the local "
            "Hugging Face cache (see `agent models`)")) from None
    return str(snapshot), snapshot


@models_command_group.command("show", context_settings=CONTEXT)
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (the figures and the chat template).")
def models_show(name: str, as_json: bool) -> None:
    """Show a model without loading its weights: architecture, parameters, context length, vocabulary,
    layers, dtype, the tool-call format its chat template gives (`--tool-format auto`) and the template.

    NAME is an alias, `demo`, a model folder, a converted .gguf file, or a hub id in the local cache.

    \b
    Examples:
      agent models show demo
      agent models show ~/models/qwen2.5-0.5b-instruct --json
    """
    source, directory = locate(name)
    try:
        info = describe_source(name, source, directory)
    except ValueError as exc:
        raise click.ClickException(printable(str(exc))) from None
    if as_json:
        click.echo(terminal_json(info.to_dict()))
        return
    Console(file=sys.stdout, highlight=False, soft_wrap=True).print(info_text(info), end="")


@models_command_group.command("alias", context_settings=CONTEXT)
@click.argument("name", required=False)
@click.argument("target", required=False)
@click.option("--remove", is_flag=True, help="Forget the alias NAME (the model itself is not touched).")
def models_alias(name: str | None, target: str | None, remove: bool) -> None:
    """Give a model a short name for --model and /model: NAME for TARGET, a model folder, a .gguf file
    or a hub id (org/name). Without TARGET: show what NAME names; without NAME: list the aliases.

    Aliases are kept in the agent home (model_aliases.json). A folder or file named NAME in the working
    directory wins over the alias.

    \b
    Examples:
      agent models alias qwen ~/models/qwen2.5-0.5b-instruct
      agent models alias smol ~/Downloads/SmolLM2-135M-Instruct.Q4_1.gguf
      agent models alias
      agent models alias qwen --remove
    """
    try:
        if remove:
            if name is None or target is not None:
                raise click.UsageError("--remove takes the alias NAME alone: agent models alias NAME --remove")
            click.echo(printable(f"removed alias {name} (it named {remove_alias(name)})"))
        elif name is None:
            aliases = read_aliases()
            click.echo(printable("\n".join(f"{alias}\t{path}" for alias, path in aliases.items())
                                 if aliases else "no model aliases; add one with agent models alias NAME TARGET"))
        elif target is None:
            found = read_aliases().get(name)
            if found is None:
                raise AliasError(f"no model alias {name!r}; see agent models alias")
            click.echo(printable(found))
        else:
            click.echo(printable(f"{name} -> {set_alias(name, target)}"))
    except AliasError as exc:
        raise click.ClickException(printable(str(exc))) from None
