"""`cocoon-agent`: the command line, one module per command group, each a thin layer over the
library. `python -m agent.cli` runs it as the installed command does.
"""
