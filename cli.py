"""The command line from a checkout: `python cli.py grok` is `tinygrok grok` (the app is tinygrok/cli/app.py)."""

from tinygrok.cli.app import main

if __name__ == "__main__":
    main()
