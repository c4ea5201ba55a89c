"""The `ttmr` command line: its commands and shared options."""
