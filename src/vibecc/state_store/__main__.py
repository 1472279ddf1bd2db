"""`python -m vibecc.state_store`: the vibecc-state command-line tool."""

from .cli import main

main()
