"""The CLI's one error path, by type: `UsageError` (exit 2), `Failure` (exit 1), `Interrupted`
and Ctrl-C (exit 130); what counts as a failed runtime check (`is_runtime_failure`: the
loop's `SimulationError`, equinox's `EquinoxRuntimeError`, the device out of memory) and as
an interrupt (`is_interrupt`). Errors are told apart by their type (and XLA's status code),
never by their message text.

The lowest module of the CLI: it imports no other.
"""

EXIT_FAILURE = 1  # a failure while running: file system, memory, a numerical failure
EXIT_USAGE = 2  # bad input, refused before anything ran
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports it


class UsageError(Exception):
    """Bad input: reported as one line, exit status 2, nothing written."""


class Failure(Exception):
    """A failure while running that the input did not announce: the file system (a full
    disk, no permission), memory, or a numerical failure inside a compiled loop or solver
    (a singular system). Reported as one line, exit status 1 in every command."""


class Interrupted(Exception):
    """Ctrl-C, caught where the command can say what was kept and how to resume: one line,
    exit status 130."""


def check(cond, message):
    """Raises `UsageError(message)` unless `cond`."""
    if not cond:
        raise UsageError(message)


def runtime_message(e: BaseException) -> str:
    """The one line that matters of an error raised by a failed runtime check: the message
    itself (`SimulationError`, `ValueError`), or, for equinox's `EquinoxRuntimeError`, whose
    text wraps the message in the stacks inside and outside of JIT, its message line."""
    import equinox as eqx

    text = str(e)
    marker = "EquinoxRuntimeError: "  # where equinox's text puts the message
    if isinstance(e, eqx.EquinoxRuntimeError) and marker in text:
        return text.split(marker, 1)[1].split("\n")[0]
    lines = [line for line in text.strip().split("\n") if line.strip()]
    return lines[0] if lines else type(e).__name__


def out_of_memory(e: BaseException) -> bool:
    """The host or the device ran out of memory: a `MemoryError`, or JAX's runtime error
    whose status code (`error_code_string`) is RESOURCE_EXHAUSTED."""
    import jax

    return isinstance(e, MemoryError) or (
        isinstance(e, jax.errors.JaxRuntimeError)
        and getattr(e, "error_code_string", None) == "RESOURCE_EXHAUSTED"
    )


def is_runtime_failure(e: BaseException) -> bool:
    """Whether `e` is a failed runtime check, by its type: the loop's `SimulationError`
    (raised on the host after the compiled loop), equinox's `EquinoxRuntimeError` (a solver
    called on its own, under `eqx.filter_jit`), or the device running out of memory."""
    import equinox as eqx

    from .._status import SimulationError

    return isinstance(e, (SimulationError, eqx.EquinoxRuntimeError)) or out_of_memory(e)


def runtime_failure(e: BaseException, where: str) -> Failure:
    """The `Failure` (exit 1) to raise for `e` (see `is_runtime_failure`), prefixed with
    `where` (the method and seed, ...)."""
    if out_of_memory(e):
        first = str(e).strip().split("\n")[0][:200] or "MemoryError"
        return Failure(f"{where}: out of memory ({first})")
    return Failure(f"{where}: {runtime_message(e)}")


# INTERRUPTION


# Set by every SIGINT handler of the CLI (`main`'s and `InterruptGuard`'s), so that `main`
# reports an interrupt that something swallowed on its way up.
SIGINT_SEEN = [False]


class InterruptGuard:
    """Ctrl-C inside: raises KeyboardInterrupt as Python does, and remembers it, so that an
    interrupt swallowed where Python cannot raise it (a host callback called from compiled
    code: "Exception ignored in ...") is raised at the next `check()`. In the main thread
    only (elsewhere no signal handler can be installed: a no-op)."""

    def __init__(self):
        self.hit = False
        self._old = None

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():

            def handler(signum, frame):
                self.hit = True
                SIGINT_SEEN[0] = True
                raise KeyboardInterrupt

            self._old = signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc):
        import signal

        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        return False

    def check(self):
        if self.hit:
            raise KeyboardInterrupt


def is_interrupt(e: BaseException) -> bool:
    """Ctrl-C: a `KeyboardInterrupt` (or an error caused by one), or any error raised after
    a SIGINT reached one of the CLI's handlers (`SIGINT_SEEN`). A Ctrl-C that lands in a host
    callback of compiled code comes back as JAX's own runtime error, whose type says nothing
    of its cause: the handler's record does."""
    link: BaseException | None = e
    while link is not None:
        if isinstance(link, KeyboardInterrupt):
            return True
        link = link.__cause__ or link.__context__
    return SIGINT_SEEN[0]


def cause(e: OSError) -> str:
    """The reason of a failure of the file system, for a one-line message."""
    return e.strerror or type(e).__name__
