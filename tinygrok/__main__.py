"""`python -m tinygrok`: the command line."""

from tinygrok.cli.app import main

main()
