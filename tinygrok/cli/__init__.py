"""The command line, the top layer: app.py holds the typer commands (parse, validate, call the package), views.py
how they print (rich tables and live views). `tinygrok` and `python -m tinygrok` start app.main."""
