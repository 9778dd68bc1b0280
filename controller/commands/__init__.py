"""One module per group of `farm` commands; controller/cli.py registers them."""
