"""`memoa run`'s checkpoints: the options' checks, the record of the configuration that a
resumed run must match (`run.json` in the checkpoint folder), and one seed's loop in
segments, saved every K steps (`memoa_jax.checkpoint`)."""

import time

from . import _distributed
from ._errors import Failure, UsageError
from ._outputs import command_line

RUN_RECORD = "run.json"  # in a checkpoint folder: the configuration a resumed run must match
# options that may change between a run and its resumption (and the per-process ones,
# `_distributed.LOCAL`)
RESUMABLE = {"--resume", "--checkpoint-every", "--wide"}


def check_options(args) -> None:
    if args.checkpoint_every is not None and args.checkpoint_every < 1:
        raise UsageError(
            f"--checkpoint-every {args.checkpoint_every}: need a positive number of steps "
            "between checkpoints"
        )


def _config_items(args, data) -> dict[str, list[str]]:
    """What a resumed run must share with the checkpointed one, hashed: the versions (the
    package's source files too), the options and the data (`_distributed.digest_items`)."""
    items = _distributed.digest_items(args, data)
    return _distributed._hashed({k: v for k, v in items.items() if k not in RESUMABLE})


def run_record(args, data, every: int) -> dict:
    import jax

    return dict(
        format="memoa run checkpoint 1",
        command=command_line(args),
        process_count=jax.process_count(),
        checkpoint_every=every,
        config=_config_items(args, data),
    )


def check_resume(args, data) -> int:
    """`--resume DIR` is a checkpoint folder of this configuration, written by as many
    processes: its checkpoint interval K. Else one line (`UsageError`) and nothing run."""
    import json

    import jax

    folder = args.resume
    where = f"--resume {str(folder)!r}"
    if not folder.exists():
        raise UsageError(f"{where}: no such folder")
    if not folder.is_dir():
        raise UsageError(f"{where} is a file, not a checkpoint folder")
    try:
        saved = json.loads((folder / RUN_RECORD).read_text())
        config, count, every = saved["config"], saved["process_count"], saved["checkpoint_every"]
    except FileNotFoundError:
        raise UsageError(
            f"{where} is not a checkpoint folder of memoa run (no {RUN_RECORD} in it; "
            "`memoa run --checkpoint-every K` writes <out>/checkpoint)"
        ) from None
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise UsageError(f"{where}: cannot read its {RUN_RECORD}: {e}") from None
    if count != jax.process_count():
        raise UsageError(
            f"{where} was written by {count} process(es); this run has "
            f"{jax.process_count()} (resume with as many processes)"
        )
    mine = _config_items(args, data)
    for k in [*config, *(k for k in mine if k not in config)]:
        a, b = config.get(k), mine.get(k)
        if a is None or b is None or a[0] != b[0]:
            show = lambda v: "(absent)" if v is None else v[1]  # noqa: E731
            raise UsageError(
                f"{where} is of another configuration: {k} {show(a)} there, {show(b)} here "
                f"(it was: {saved.get('command', '?')}); nothing was run"
            )
    return int(every)


def run_in_segments(run, unit, every: int, resume, bar):
    """One seed of one simulation as `run`'s segments, its carry saved in the checkpoint
    folder `unit` every `every` steps and at the end; from its last checkpoint there when
    resuming. Returns the `SimResult` (checks not raised) and the seconds in segments
    and the steps run in them."""
    import jax

    from ..checkpoint import CheckpointError, checkpoint_step, load_checkpoint, save_checkpoint

    n_steps = run.n_steps
    carry = None
    if resume is not None and checkpoint_step(unit) is not None:
        try:
            carry = load_checkpoint(unit, run)
        except CheckpointError as e:
            raise UsageError(f"--resume: {e}") from None
    carry = run.init() if carry is None else carry
    t = first = int(carry.t)
    seconds = 0.0
    bar.update(t)
    # finer segments for the bar (one compiled program for all), with or without it: every
    # process of a --distributed run must run the same segments (their collectives)
    fine = -(-n_steps // 64)
    ends = set(range(every, n_steps, every)) | set(range(fine, n_steps, fine)) | {n_steps}
    for stop in sorted(e for e in ends if e > t):
        t0 = time.perf_counter()
        carry = jax.block_until_ready(run.segment(carry, stop))
        seconds += time.perf_counter() - t0
        carry.status.raise_if_failed()
        bar.update(stop - t)
        t = stop
        if stop % every == 0 or stop == n_steps:
            try:
                save_checkpoint(unit, run, carry)
            except OSError as e:
                raise Failure(f"cannot write a checkpoint in {unit}: {e}") from None
    return run.finish(carry, throw=False), seconds, n_steps - first
