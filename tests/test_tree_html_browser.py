"""The HTML page of a real tree-search turn, opened in a real browser (headless Chromium, Debian's package):
every node of the stored tree is in the rendered DOM, and a screenshot is kept for a person to look at."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Where the screenshot stays after the test (CI can attach the folder); AGENT_TEST_OUTPUT moves it.
OUTPUT = Path(os.environ.get("AGENT_TEST_OUTPUT", REPO / "test-output")) / "tree_html"


def _agent(home: Path, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "AGENT_HOME": str(home), "HF_HUB_OFFLINE": "1"})
    assert done.returncode == 0, done.stderr
    return done.stdout


def _chromium(*args: str) -> subprocess.CompletedProcess[bytes]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser is not None, "headless Chromium is needed (Debian: apt-get install chromium)"
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", *args], capture_output=True,
                          timeout=120)


def test_the_tree_of_a_real_search_renders_every_node_in_chromium(tmp_path: Path) -> None:
    home = tmp_path / "home"
    answer = json.loads(_agent(home, "run", "What is 12 * 12?", "--strategy", "tree", "--budget", "64", "--json"))
    page = tmp_path / "tree.html"
    wrote = _agent(home, "sessions", "tree", answer["session_id"], "--html", str(page))
    count = re.search(r"wrote the (\d+) nodes", wrote)
    assert count is not None, wrote
    stored = int(count.group(1))
    assert stored > 10  # a real search: many branches

    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-500:]
    rendered = re.findall(rb'<li class="node[^"]*" data-node="(\d+)"', dom.stdout)
    assert len(rendered) == stored and len(set(rendered)) == stored  # every stored node, once
    assert b"calc(expr=&apos;12 * 12&apos;) -&gt; 144" in dom.stdout or b"calc(expr='12 * 12') -&gt; 144" in dom.stdout

    OUTPUT.mkdir(parents=True, exist_ok=True)
    shot = OUTPUT / "tree.png"
    shot.unlink(missing_ok=True)
    done = _chromium(f"--screenshot={shot}", "--window-size=1200,2000", page.as_uri())
    assert done.returncode == 0, done.stderr[-500:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1200, 2000)
    assert len(png) > 20_000  # a drawn page, not a blank one (a blank 1200x2000 PNG is a few KB)
