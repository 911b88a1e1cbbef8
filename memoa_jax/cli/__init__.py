"""Command line `memoa` (`python -m memoa_jax` is the same program).

One module per command (`run`, `sweep`, `bench`, `verify`, `reproduce`, `tune`), each with
`SUMMARY` (two lines for `memoa --help`), `add_parser(subparsers, formatter)`, which
registers the command and sets `func=<its main(args) -> int>`, and `main(args)`. What they
share lives in one private module per idea, none of which imports a command: `_errors` (the
exit statuses and the error types below), `_options` (shared options, counts and sizes),
`_build` (the options' `RunSpec`, `build(args)`), `_config` (`memoa run --config FILE`),
`_resources` (memory checks), `_outputs` (output folders, atomic files, JSON, tables),
`_cache` (JAX's compilation cache), `_tidy` (summary.csv) and `_distributed`. No command
imports another; the measurements and the numerics the commands print live in the library
(`memoa_jax.bench`, `memoa_jax.nash`).

One error path for every command (`main`): a failure the user can cause ends in one line
on stderr, `memoa: error: ...`, naming the value or path and the cause, without a traceback
(`--debug` shows it), and an exit status that says what kind it was:

* 2: bad input (`UsageError`, argparse's own errors), refused before anything ran;
* 1: a failure while running (`Failure`): the file system (no permission, a read-only or
  full disk: the file being written is left as it was), memory, or a numerical failure in
  a compiled loop or solver (a singular system), the same in every command;
* 130: Ctrl-C; a command that keeps partial results (sweep, reproduce) says how many and
  the command that resumes.
"""

import argparse
import logging
import sys

from . import bench, reproduce, run, sweep, tune, verify
from ._cache import enable_compile_cache
from ._errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    SIGINT_SEEN,
    Failure,
    Interrupted,
    UsageError,
    is_interrupt,
    is_runtime_failure,
    runtime_failure,
)
from ._options import HelpFormatter
from ._outputs import CREATED, remove_empty_outputs

# in the order `memoa --help` lists them
COMMANDS = (run, sweep, tune, verify, bench, reproduce)

DESCRIPTION = """\
MEMOA in JAX: N online agents predict a time series; each plays a closed-form mean-field
Nash policy, and a server mixes their predictions. Compare it with greedy baselines on
built-in data or your own CSV, at any N from 1 to millions.

Every command writes to a new folder under runs/ unless given --out. `memoa COMMAND --help`
lists a command's options with their defaults."""


class _ArgumentError(Exception):
    """argparse's error, raised instead of printed (see `_Parser.error`)."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the one error path of `main`: one line (the usage it
    would print first is what `--help` shows), exit status 2. `commands`: each command's
    parser, by name."""

    commands: dict[str, argparse.ArgumentParser]

    def error(self, message):
        raise _ArgumentError(self.prog, message)


def _parser():
    p = _Parser(
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
            help="do not use JAX's persistent compilation cache, nor the compiled "
            "programs `memoa run` keeps beside it (default: on, in $MEMOA_JAX_CACHE, else "
            "$XDG_CACHE_HOME/memoa-jax/jax or ~/.cache/memoa-jax/jax; a second identical "
            "run then skips most of its compilation)",
        )
        command.add_argument(
            "--debug",
            action="store_true",
            help="on an error, show Python's traceback instead of the one-line message",
        )
    p.commands = dict(sub.choices)
    return p


def _parse(argv):
    """The parsed options; with `--config FILE`, parsed again over the file's values as
    the command's defaults, so that the options given explicitly override the file."""
    p = _parser()
    args = p.parse_args(argv)
    if getattr(args, "config", None) is not None:
        from ._config import config_defaults, read_config

        p.commands[args.command].set_defaults(**config_defaults(read_config(args.config)))
        args = p.parse_args(argv)
    return args


def _say(message: str) -> None:
    print(f"memoa: error: {message}", file=sys.stderr)


def main(argv=None) -> int:
    """Runs `memoa ARGS...` (`argv`: default `sys.argv[1:]`); returns the exit status.

    Called as the program (`argv` None), a Ctrl-C ends the process at once after its one
    line (`os._exit(130)`): the interpreter's shutdown could otherwise crash on the compiled
    work still running in JAX's threads (a SIGSEGV was seen)."""
    import signal
    import threading

    SIGINT_SEEN[0] = False
    CREATED.clear()
    old_handler = None
    if threading.current_thread() is threading.main_thread():

        def on_sigint(signum, frame):
            SIGINT_SEEN[0] = True
            raise KeyboardInterrupt

        old_handler = signal.signal(signal.SIGINT, on_sigint)
    old_hook = sys.unraisablehook

    def on_unraisable(u):
        """A KeyboardInterrupt raised where Python cannot propagate it (a garbage-collector
        callback of JAX: "Exception ignored in ...") is raised again, silently, at the next
        instruction of the main thread, so that one Ctrl-C still stops the command."""
        if isinstance(u.exc_value, KeyboardInterrupt):
            import _thread
            import time

            def again():  # (raised inside the hook, it would be ignored again)
                time.sleep(0.05)
                _thread.interrupt_main()

            _thread.start_new_thread(again, ())
            return
        old_hook(u)

    sys.unraisablehook = on_unraisable
    code, command = EXIT_INTERRUPTED, "memoa"
    try:
        code, command = _main(argv)
        if SIGINT_SEEN[0] and code == 0:  # an interrupt swallowed on its way up
            print(f"memoa: interrupted (Ctrl-C); {command} stopped", file=sys.stderr)
            code = EXIT_INTERRUPTED
    except KeyboardInterrupt:  # before or after the command's own error path
        print(f"memoa: interrupted (Ctrl-C); {command} stopped", file=sys.stderr)
        code = EXIT_INTERRUPTED
    finally:
        if code != 0:
            remove_empty_outputs()
        sys.unraisablehook = old_hook
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    if code == EXIT_INTERRUPTED and argv is None:
        import os

        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)
    return code


def _main(argv) -> tuple[int, str]:
    """`main`'s work: the exit status and the command's name."""
    try:
        args = _parse(argv)
    except _ArgumentError as e:
        print(f"{e.prog}: error: {e} (see {e.prog} --help)", file=sys.stderr)
        return EXIT_USAGE, "memoa"
    except UsageError as e:  # (a bad --config file)
        _say(str(e))
        return EXIT_USAGE, "memoa"
    args.argv = list(sys.argv[1:] if argv is None else argv)  # to say how to resume
    return _run(args), args.command


def _run(args) -> int:
    debug = bool(getattr(args, "debug", False))
    # JAX logs a failed runtime check's whole traceback ("jax.pure_callback failed") before
    # raising it; the error path below reports it in one line (`--debug`: both)
    callback_log = logging.getLogger("jax._src.callback")
    was_disabled, callback_log.disabled = callback_log.disabled, not debug
    try:
        enable_compile_cache(args)
        return args.func(args)
    except UsageError as e:
        _say(str(e))
        return EXIT_USAGE
    except Failure as e:
        _say(str(e))
        return EXIT_FAILURE
    except Interrupted as e:
        print(f"memoa: {e}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"memoa: interrupted (Ctrl-C); {args.command} stopped", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:  # the file system, where a command did not name the path itself
        if debug:
            raise
        where = f"{e.filename}: " if e.filename else ""
        _say(f"{where}{e.strerror or e}")
        return EXIT_FAILURE
    except Exception as e:
        if debug:
            raise
        if is_interrupt(e):  # Ctrl-C inside a host callback of compiled code
            print(f"memoa: interrupted (Ctrl-C); {args.command} stopped", file=sys.stderr)
            return EXIT_INTERRUPTED
        if is_runtime_failure(e):  # a runtime check or out of memory the command did not name
            _say(str(runtime_failure(e, args.command)))
            return EXIT_FAILURE
        first = (str(e).strip().split("\n") or [""])[0][:300]
        _say(
            f"{args.command}: unexpected {type(e).__name__}: {first} (a bug: please report "
            "it with the traceback that --debug shows)"
        )
        return EXIT_FAILURE
    finally:
        callback_log.disabled = was_disabled


__all__ = ["main"]
