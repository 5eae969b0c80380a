"""`python -m agent.cli`: the same entry point as the installed `cocoon-agent`."""

from agent.cli.main import main

main()
