"""The greedy ridge step of FedMOE's non-game client (spec §7.2), as a free function: G1
(`LocalRidge`), G4 (`FollowTheMean`) and MEMOA's warm-up before its first sync all call it."""

import jax.numpy as jnp

from .._agents import advance, map_agents, map_chunks, ridge_control
from .._custom_types import Array, Float
from .._kernels import (
    SMALL_SOLVE_UP_TO,
    advance_rows,
    by_phase,
    energy_rows,
    ridge_rows,
    rows,
)
from .._mean_field import CostParams
from ._context import MethodState, StepContext

LAPACK_CHUNK = 16384
"""Agents per batched LAPACK solve of the plain ridge (`Kernels(small_solve=False)`): on
XLA:CPU (jaxlib 0.10, 2 cores) unchunked batched solves of several methods running
concurrently deadlocked the intra-op thread pool (jaxlib's `ParallelBatchMap` waits for
tasks queued behind its own callers); one chunk at a time they run."""


def greedy_step(
    ctx: StepContext,
    state: MethodState,
    base: Float[Array, "d n"],
    cost: CostParams,
    ridge_window: int,
) -> tuple[Float[Array, " n"], Float[Array, "d n"]]:
    """Every agent's G1 ridge control `β` on its own past `τ = t−T_c..t−1` (spec §7.2,
    `T_c = ridge_window`, discount `alpha` and ridge weight `gamma` of `cost`), applied to
    `base`: returns `(‖β‖², base + Z_t β)`. Reads the method's ring of base states
    (`state.yhat_ring`) and features back to `Z_{t−T_c}`: a method calling it has
    `history ≥ ridge_window`."""
    dt, k, Tc = ctx.y.dtype, ctx.kernels, ridge_window
    tau = ctx.t - Tc + jnp.arange(Tc)
    lag = (ctx.t - 1 - tau).astype(jnp.result_type(cost.alpha, float))
    weights = jnp.where(tau >= 0, jnp.exp(-cost.alpha * lag), 0.0)
    weights = weights.astype(dt)
    y_next = ctx.y[jnp.clip(tau + 1, 0, ctx.y.shape[0] - 1)]
    gamma = jnp.asarray(cost.gamma, dt)
    d, p = ctx.mom_M.shape[1:]
    rows_fit = k.rows and k.small_solve and min(Tc * d, p) <= SMALL_SOLVE_UP_TO

    def one(zw, yw, b, z):  # one agent: the plain path
        beta = ridge_control(zw, yw, y_next, weights, gamma, k.small_solve)
        return advance(b, z, beta), beta @ beta

    def update(zw, yw, b, z):  # the population as rows (see `_kernels`)
        beta = ridge_rows(zw, yw, y_next, weights, gamma)
        nxt = advance_rows(rows(b), z, beta)
        return jnp.concatenate(nxt), energy_rows(beta)

    def play(slot):
        slots = [slot(s - Tc) for s in range(Tc)]
        assert state.yhat_ring is not None, "the greedy step reads the ring of base states"
        yhat_win = [state.yhat_ring[j] for j in slots]

        def window(a):  # the agents' features at t−T_c..t−1 and at t
            offsets = tuple(s - Tc for s in range(Tc)) + (0,)
            *z_win, z = ctx.features(a, offsets, (*slots, slot(0)))
            return z_win, z

        def one_of(a, yw, b):
            z_win, z = window(a)
            return one(jnp.stack(z_win), yw, b, z)

        def update_of(a, yw, b):
            z_win, z = window(a)
            return update(z_win, yw, b, z)

        if not rows_fit:
            yw = jnp.stack(yhat_win)
            bs = ctx.batch_size
            if not k.small_solve and bs is None:  # batched LAPACK: see LAPACK_CHUNK
                bs = LAPACK_CHUNK
            return map_agents(one_of, ctx.agents, yw, base, batch_size=bs)
        return map_chunks(update_of, ctx.agents, yhat_win, base, batch_size=ctx.batch_size)

    nxt, energy = by_phase(ctx.t, ctx.ring_size, play, k.phases)
    return energy, nxt
