"""What a newcomer meets on the command line (issue 17): mistakes reported before the model loads,
options that do not apply, a mistyped --db, session titles and listings, the `demo` model name, the
shipped grammars by name, and an agent home that cannot be written. Each through the real command."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

from agent.applicable import setting_warning
from agent.config import DecodeConfig
from agent.render import sessions_table
from agent.sessions.store import SessionStore
from privileges import without_root_override


def agent(*args: str, home: Path, cwd: Path | None = None, preexec: Callable[[], None] | None = None,
          online: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("AGENT_KB", None)
    if online:  # as a user with network: the hub is reachable in principle (here: a closed port answers at once)
        env.pop("HF_HUB_OFFLINE")
        env.pop("TRANSFORMERS_OFFLINE", None)
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"
    return subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=cwd, preexec_fn=preexec)


def clean_error(done: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert done.returncode == status, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "Traceback" not in done.stdout
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def test_session_with_no_save_is_a_usage_error(tmp_path: Path) -> None:
    done = agent("run", "hi", "--session", "7b27", "--no-save", home=tmp_path)
    clean_error(done, 2, "--session", "--no-save")


@pytest.mark.parametrize(("option", "named"), [(["--device", "gpu"], "--device"), (["--dtype", "float8"], "--dtype"),
                                               (["--grammar", "no-such.lark"], "no-such.lark"),
                                               (["--session", "ffff"], "ffff")])
def test_option_mistakes_come_before_the_model_loads(tmp_path: Path, option: list[str], named: str) -> None:
    # the model folder does not exist either: the option's problem is what the user hears
    done = agent("run", "hi", "--model", str(tmp_path / "no-model"), *option, home=tmp_path)
    clean_error(done, 2 if option[0] in ("--device", "--dtype") else 1, named)
    assert "no-model" not in done.stderr


def test_a_tool_clash_comes_before_the_model_loads(tmp_path: Path) -> None:
    tools = tmp_path / "mine.py"
    tools.write_text('from agent.tooling import tool\n\n\n@tool\ndef calc(expression: str) -> str:\n'
                     '    """My own calc."""\n    return expression\n')
    done = agent("run", "hi", "--model", str(tmp_path / "no-model"), "--tools", str(tools), home=tmp_path)
    clean_error(done, 1, "'calc' is already registered")
    assert "no-model" not in done.stderr


@pytest.mark.parametrize("option", [["--top-k", "5"], ["--budget", "10"], ["--strategy", "greedy", "-t", "0.7"],
                                    ["-t", "0.7", "--budget", "10"],
                                    ["--strategy", "beam", "--top-p", "0.9"]])
def test_options_the_strategy_ignores_are_an_error(tmp_path: Path, option: list[str]) -> None:
    done = agent("run", "hi", "--model", str(tmp_path / "no-model"), *option, home=tmp_path)
    clean_error(done, 2, "does not apply to the")


def test_mistyped_db_folder_is_not_created(tmp_path: Path, tiny_model_dir: Path) -> None:
    db = tmp_path / "typo" / "s.sqlite"
    for args in (["run", "hi", "--model", str(tiny_model_dir), "--db", str(db)], ["sessions", "list", "--db", str(db)]):
        clean_error(agent(*args, home=tmp_path / "home"), 2, str(db), "does not exist")
        assert not (tmp_path / "typo").exists()
    done = agent("run", "hi", "--model", str(tiny_model_dir), "--no-tools", "--max-new-tokens", "3", "--db", str(db),
                 "--create", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert db.is_file()


def test_sessions_get_their_first_question_as_title_and_list_as_tab_separated_lines(
        tmp_path: Path, tiny_model_dir: Path) -> None:
    question = "Webei is a small town; tell me everything about its history, its people and its rivers please"
    for n in range(3):
        done = agent("run", f"{question} {n}", "--model", str(tiny_model_dir), "--no-tools", "--max-new-tokens", "2",
                     home=tmp_path)
        assert done.returncode == 0, done.stderr
    listed = json.loads(agent("sessions", "list", "--json", home=tmp_path).stdout)
    with SessionStore.open(tmp_path / "sessions.sqlite") as store:
        titles = [store.get_session(row["id"])["title"] for row in listed]
    assert titles == ["Webei is a small town; tell me everything about its…"] * 3
    piped = agent("sessions", "list", home=tmp_path).stdout.splitlines()
    assert piped[0].split("\t") == ["id", "started", "model", "turns", "title"]
    assert sum("Webei" in line for line in piped) == 3  # one line per session: grep finds each
    for line in piped[1:]:
        cells = line.split("\t")
        assert len(cells) == 5 and cells[2] == tiny_model_dir.name and cells[4].startswith("Webei is a small")
    # on an 80-column terminal: one line per session (title cut), the model path does not eat the width
    out = io.StringIO()
    with SessionStore.open(tmp_path / "sessions.sqlite") as store:
        Console(file=out, width=80, force_terminal=False).print(sessions_table(store.list_sessions()))
    lines = out.getvalue().splitlines()
    assert len(lines) == 4 and all(len(line) <= 80 for line in lines)
    for line, row in zip(lines[1:], listed, strict=True):  # id and model whole, the title cut
        assert line.split()[0] == row["id"] and f" {tiny_model_dir.name} " in line
        assert "Webei is a small town" in line


def test_demo_is_the_shipped_model_by_name(tmp_path: Path) -> None:
    # online: `demo` is never looked up on the hub (the hub here is a closed port; a lookup would fail)
    named = agent("run", "What is 2 + 2?", "--model", "demo", "--json", "--max-new-tokens", "16", "--no-save",
                  home=tmp_path, cwd=tmp_path, online=True)
    default = agent("run", "What is 2 + 2?", "--json", "--max-new-tokens", "16", "--no-save", home=tmp_path)
    assert named.returncode == 0 and default.returncode == 0, (named.stderr, default.stderr)
    assert json.loads(named.stdout)["response"] == json.loads(default.stdout)["response"]
    assert json.loads(named.stdout)["model"] == json.loads(default.stdout)["model"]


def test_shipped_grammars_by_name_and_the_protocol_template(tmp_path: Path, tiny_model_dir: Path) -> None:
    listed = agent("grammar", "list", home=tmp_path, cwd=tmp_path)
    assert listed.returncode == 0 and "protocol" not in listed.stdout
    names = [line.split()[0] for line in listed.stdout.splitlines()]
    assert names == ["json", "yes_no"] and "JSON" in listed.stdout
    checked = agent("grammar", "check", "json", home=tmp_path, cwd=tmp_path)
    assert checked.returncode == 0 and checked.stdout.strip().endswith("json.lark: ok")
    protocol = Path(__file__).parent.parent / "grammars" / "protocol.lark"
    template = agent("grammar", "check", str(protocol), home=tmp_path)
    assert template.returncode == 0 and "template of the tool-call protocol" in template.stdout
    assert "Traceback" not in template.stderr
    clean_error(agent("run", "hi", "--grammar", "protocol", home=tmp_path), 2, "template")
    # from any folder, by name
    done = agent("run", "hi", "--model", str(tiny_model_dir), "--grammar", "yes_no", "--max-new-tokens", "4",
                 "--no-save", "--json", home=tmp_path, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["response"].split()[0].rstrip(",.").lower() in ("yes", "no")


@pytest.mark.parametrize("home_kind", ["missing under a read-only folder", "read-only"])
def test_an_agent_home_that_cannot_be_written_gives_clear_messages(tmp_path: Path, tiny_model_dir: Path,
                                                                   home_kind: str) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    home = parent / "home"
    session_id = ""
    if home_kind == "read-only":  # a home with a saved session in it, then made read-only
        home.mkdir()
        saved = agent("run", "hi", "--model", str(tiny_model_dir), "--no-tools", "--max-new-tokens", "3", "--json",
                      home=home, cwd=tmp_path)
        session_id = json.loads(saved.stdout)["session_id"]
    parent.chmod(0o500)
    if home_kind == "read-only":
        home.chmod(0o500)
    try:
        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return agent(*args, home=home, cwd=tmp_path, preexec=without_root_override)

        answered = run("run", "hi", "--model", str(tiny_model_dir), "--no-tools", "--max-new-tokens", "3", "--no-save")
        clean_error(answered, 0)
        clean_error(run("tools", "list"), 0)
        clean_error(run("grammar", "check", "json"), 0)
        saving = run("run", "hi", "--model", str(tiny_model_dir), "--max-new-tokens", "3")
        clean_error(saving, 1, str(home))
        if home_kind == "missing under a read-only folder":
            for args in (["sessions", "list"], ["sessions", "show", "abc"], ["kb", "search", "cat"]):
                clean_error(run(*args), 1, "cannot create the agent home", str(home))
        else:  # the knowledge base cannot be made in it: said, with the file named
            clean_error(run("kb", "search", "cat"), 1, str(home / "kb.sqlite"))
            listed = run("sessions", "list")  # saved sessions stay readable
            clean_error(listed, 0)
            assert session_id in listed.stdout
            clean_error(run("sessions", "show", session_id), 0)
    finally:
        parent.chmod(0o700)
        if home.exists():
            home.chmod(0o700)


def test_the_repl_setting_warning_names_what_the_strategy_ignores() -> None:
    # what the REPL prints after `/set temperature=0.7` under greedy (the README's own example)
    greedy = DecodeConfig()
    assert setting_warning(greedy.set_from_text("temperature", "0.7"), "temperature") == (
        "temperature does not apply to the greedy strategy (it ignores it); choose a strategy that uses it, "
        "e.g. /set strategy=sample")
    assert setting_warning(greedy.set_from_text("seed", "3"), "seed") is None
    tree = DecodeConfig(strategy="tree", budget=64, top_k=5)
    assert setting_warning(tree, "budget") is None
    assert "top_k, budget do not apply to the greedy strategy" in str(
        setting_warning(tree.set_from_text("strategy", "greedy"), "strategy"))
