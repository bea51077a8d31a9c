"""Subcommands of the ``medsora`` command line.

Each module here defines ``add_parser(subparsers)``, which registers the
subcommand and returns its parser, and ``run(args) -> int``. Modules import
torch and the models inside ``run`` so that ``medsora --help`` stays fast.
"""

#: Subcommands in the order ``medsora --help`` lists them.
COMMANDS = ("score", "batch", "rank", "kb", "dataset", "worker", "serve")
