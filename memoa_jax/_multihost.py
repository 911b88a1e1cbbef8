"""Exchanges of a few bytes between processes (`jax.distributed`), for what is decided
outside the compiled programs: the checkpoints' barriers and the CLI's start-up agreement.
"""

import numpy as np


def allgather_bytes(payload: bytes) -> list[bytes]:
    """Every process's `payload`, in process order (blocks until all have given theirs);
    `[payload]` in one process."""
    import jax
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return [payload]
    sizes = np.asarray(
        multihost_utils.process_allgather(np.asarray([len(payload)], np.int32))
    ).reshape(-1)
    width = -(-int(sizes.max()) // 4096) * 4096  # few shapes, few compilations
    buf = np.zeros(width, np.int32)  # (one byte per int32: collectives of int32 everywhere)
    buf[: len(payload)] = np.frombuffer(payload, np.uint8)
    every = np.asarray(multihost_utils.process_allgather(buf)).reshape(len(sizes), width)
    return [every[p, : sizes[p]].astype(np.uint8).tobytes() for p in range(len(sizes))]
