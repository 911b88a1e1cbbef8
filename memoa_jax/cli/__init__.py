"""Command line `memoa` (`python -m memoa_jax` is the same program).

One module per command (`run`, `sweep`, `bench`, `verify`, `reproduce`, `tune`), each with
`SUMMARY` (two lines for `memoa --help`), `add_parser(subparsers, formatter)`, which
registers the command and sets `func=<its main(args) -> int>`, and `main(args)`. What they
share is in `_common` (which imports no command); no command imports another.
"""

import argparse
import sys

from . import bench, reproduce, run, sweep, tune, verify
from ._common import HelpFormatter, UsageError, enable_compile_cache

# in the order `memoa --help` lists them
COMMANDS = (run, sweep, tune, verify, bench, reproduce)

DESCRIPTION = """\
MEMOA in JAX: N online agents predict a time series; each plays a closed-form mean-field
Nash policy, and a server mixes their predictions. Compare it with greedy baselines on
built-in data or your own CSV, at any N from 1 to millions.

Every command writes to a new folder under runs/ unless given --out. `memoa COMMAND --help`
lists a command's options with their defaults."""


def _parser():
    p = argparse.ArgumentParser(
        prog="memoa", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    from .. import __version__

    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(dest="command", required=True, title="commands", metavar="COMMAND")
    for module in COMMANDS:
        module.add_parser(sub, HelpFormatter)
    for command in sub.choices.values():
        command.add_argument(
            "--no-compile-cache",
            action="store_true",
            help="do not use JAX's persistent compilation cache (default: on, in "
            "$XDG_CACHE_HOME/memoa-jax/jax or ~/.cache/memoa-jax/jax; a second identical "
            "run then skips most of its compilation)",
        )
    return p


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        enable_compile_cache(args)
        return args.func(args)
    except UsageError as e:
        print(f"memoa: error: {e}", file=sys.stderr)
        return 2


__all__ = ["main"]
