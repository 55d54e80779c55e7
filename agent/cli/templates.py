"""`agent templates`: saved prompts with $variables (agent.templates), used as `agent run --template NAME`."""

from __future__ import annotations

import click

from agent.cli.options import CONTEXT
from agent.safe_text import printable
from agent.templates import PromptTemplate, list_templates, load_template, remove_template, save_template


@click.group("templates", context_settings=CONTEXT)
def templates_command_group() -> None:
    """Saved prompts with $variables: `$input` takes what `agent run` is given (PROMPT and stdin), other
    variables come from `-p NAME VALUE`. Stored as JSON files in the agent home's templates/ folder.

    \b
    Examples:
      agent templates save summary 'Summarise this in $lang: $input' -s "Be brief."
      cat notes.txt | agent run --template summary -p lang French
      agent templates list
      agent templates show summary
      agent templates remove summary
    """


@templates_command_group.command("save", context_settings=CONTEXT)
@click.argument("name")
@click.argument("prompt")
@click.option("--system", "-s", "system", metavar="TEXT", default=None, help="System text the template adds.")
@click.option("--replace", is_flag=True, help="Overwrite a template of that name.")
def save(name: str, prompt: str, system: str | None, replace: bool) -> None:
    """Save PROMPT as template NAME (quote it: $variables are for the template, not the shell).

    \b
    Example:
      agent templates save translate 'Translate into $lang: $input'
    """
    template = PromptTemplate(name=name, prompt=prompt, system=system)
    path = save_template(template, replace=replace)
    uses = ", ".join("$" + v for v in template.variables()) or "no variables"
    click.echo(printable(f"saved template {name} ({uses}) to {path}"))


@templates_command_group.command("list", context_settings=CONTEXT)
def list_command() -> None:
    """List the saved templates: name, variables, prompt.

    \b
    Example:
      agent templates list
    """
    templates = list_templates()
    if not templates:
        click.echo("no templates saved yet (agent templates save NAME PROMPT)")
        return
    for template in templates:
        uses = " ".join("$" + v for v in template.variables()) or "-"
        click.echo(printable(f"{template.name}\t{uses}\t{template.prompt.splitlines()[0] if template.prompt else ''}"))


@templates_command_group.command("show", context_settings=CONTEXT)
@click.argument("name")
def show(name: str) -> None:
    """Show a template's prompt, system text and variables.

    \b
    Example:
      agent templates show summary
    """
    template = load_template(name)
    click.echo(printable(f"prompt: {template.prompt}"))
    if template.system is not None:
        click.echo(printable(f"system: {template.system}"))
    click.echo(f"variables: {' '.join('$' + v for v in template.variables()) or 'none'}")


@templates_command_group.command("remove", context_settings=CONTEXT)
@click.argument("name")
def remove(name: str) -> None:
    """Delete a saved template.

    \b
    Example:
      agent templates remove summary
    """
    path = remove_template(name)
    click.echo(printable(f"removed template {name} ({path})"))
