"""Saved prompt templates (`agent templates`, `agent run --template NAME`): a prompt with $variables and an optional
system text, one JSON file each in the agent home's templates/ folder.

`$input` is the text given to `agent run` (its PROMPT argument and stdin, as without a template); other
variables come from `-p NAME VALUE`. Substitution is the standard library's `string.Template` (`$name` or
`${name}`, `$$` for a dollar sign); a variable left without a value is an error naming it.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from string import Template

from agent.paths import agent_home

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
INPUT = "input"  # the variable that receives what `agent run` was given


class TemplateError(Exception):
    """A template that cannot be saved, found or filled in: the message names it and what is wrong."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str
    prompt: str
    system: str | None = None

    def variables(self) -> list[str]:
        """The variables the prompt and system text use, in order of first use."""
        names: list[str] = []
        for text in (self.prompt, self.system or ""):
            for name in Template(text).get_identifiers():
                if name not in names:
                    names.append(name)
        return names

    def fill(self, given: str, params: dict[str, str]) -> tuple[str, str | None]:
        """(prompt, system) with `given` (what `agent run` was given) as $input and `params` as the other
        variables; `given` follows a prompt without $input after a blank line (as `llm` does). TemplateError
        naming any variable without a value, or a value for one the template does not have."""
        values = dict(params)
        if given:
            values[INPUT] = given
        else:
            values.pop(INPUT, None)  # $input comes from PROMPT or stdin only: empty, it is missing
        missing = [name for name in self.variables() if name not in values]
        if missing:
            hint = " (give the text as PROMPT or on stdin)" if missing == [INPUT] else " (-p NAME VALUE each)"
            raise TemplateError(f"template {self.name!r} needs a value for "
                                f"{', '.join('$' + m for m in missing)}{hint}")
        unused = sorted(set(values) - set(self.variables()) - {INPUT})
        if unused:
            raise TemplateError(f"template {self.name!r} has no variable {', '.join('$' + u for u in unused)} "
                                f"(it uses: {', '.join('$' + v for v in self.variables()) or 'none'})")
        try:
            prompt = Template(self.prompt).substitute(values)
            system = None if self.system is None else Template(self.system).substitute(values)
        except ValueError as exc:  # a lone `$` that is not a variable
            raise TemplateError(f"template {self.name!r}: {exc} (write $$ for a dollar sign)") from None
        if given and INPUT not in self.variables():
            prompt = f"{prompt}\n\n{given}"
        return prompt, system


def templates_dir() -> Path:
    return agent_home() / "templates"


def _path(name: str) -> Path:
    if not NAME.fullmatch(name):
        raise TemplateError(f"{name!r} is not a template name: letters, digits, _ . - (up to 64, not starting "
                            "with a punctuation mark)")
    return templates_dir() / f"{name}.json"


def save_template(template: PromptTemplate, *, replace: bool = False) -> Path:
    """Write the template's file; an existing one only with `replace`."""
    path = _path(template.name)
    if path.exists() and not replace:
        raise TemplateError(f"template {template.name!r} exists ({path}); pass --replace to overwrite it")
    template.fill("-", {name: "-" for name in template.variables()})  # a stray `$` is refused now, not when used
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(template), ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def load_template(name: str) -> PromptTemplate:
    path = _path(name)
    if not path.exists():
        known = ", ".join(t.name for t in list_templates()) or "none saved yet (agent templates save NAME PROMPT)"
        raise TemplateError(f"no template {name!r}; templates: {known}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return PromptTemplate(name=name, prompt=str(data["prompt"]), system=data.get("system"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TemplateError(f"template file {path} cannot be read: {exc}") from None


def list_templates() -> list[PromptTemplate]:
    folder = templates_dir()
    if not folder.is_dir():
        return []
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(load_template(path.stem))
        except TemplateError:
            continue  # a broken file is reported when it is used, not when others are listed
    return found


def remove_template(name: str) -> Path:
    path = _path(name)
    if not path.exists():
        raise TemplateError(f"no template {name!r}")
    path.unlink()
    return path
