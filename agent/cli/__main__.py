"""`python -m agent.cli`: the same as the `agent` command."""

from agent.cli import main

main()
