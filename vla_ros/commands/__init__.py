"""The `vla-ros` subcommands: all of the argument parsing, one module per command; the work is done by the
library packages, imported inside the handlers."""
