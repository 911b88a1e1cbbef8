"""Monte Carlo check of the Nash verification: one window simulated with N agents.

All N agents share one RFN encoder (homogeneity H1, spec §2.2), so the window moments
`M_s`, `𝕊_s` are exact, and the mean-field policy `(K, L, g)` and the N-player equilibrium
`(K^N, L^N, h^N)` (`solve_fne_reduced`) are applied to the SAME feature draws `Zⁱ_s`. Per
step only population statistics leave the scan (the empirical mean and its standard error);
per agent only the two running costs are kept: memory O(N), never N × T.

What the exact theory predicts and the simulation checks:
* under the mean-field policy `E ȳ_s = m_s` for every N (the mean dynamics are linear), so
  `ȳ_s − m_s` is sampling noise of size `std(ŷ_s)/√N`;
* the mean realized cost of the agents estimates `J¹` (`evaluate_policy`), and the paired
  difference of the two policies' realized costs estimates `J¹(MF) − J¹(FNE)`.
"""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jax import lax

from .._agents import advance, map_agents, map_chunks, mean_field_control
from .._custom_types import Array, Float, PRNGKeyArray
from .._encoders import RFNEncoder, RFNParams
from .._mean_field import CostParams, solve_mean_field, window_weights
from ._reduced import check_n_agents, solve_fne_reduced


class MonteCarloResult(eqx.Module):
    """Statistics of one simulated window (policies: "mf" = mean-field, "fne" = N-player Nash).

    Attributes:
        n_agents: N.
        flow: `(T+1, d)` the mean-field flow `m`.
        ybar_mf, ybar_fne: `(T+1, d)` empirical means `ȳ_s` under each policy.
        se_mf, se_fne: `(T+1, d)` their standard errors `std_i(ŷⁱ_s)/√N`.
        cost_mf, cost_fne: mean realized window cost over the agents.
        cost_mf_se, cost_fne_se: their standard errors `std_i/√N`.
        cost_diff, cost_diff_se: mean and standard error of the paired difference
            `costⁱ(MF) − costⁱ(FNE)` (same draws).
    """

    n_agents: int = eqx.field(static=True)
    flow: Float[Array, "T1 d"]
    ybar_mf: Float[Array, "T1 d"]
    ybar_fne: Float[Array, "T1 d"]
    se_mf: Float[Array, "T1 d"]
    se_fne: Float[Array, "T1 d"]
    cost_mf: Float[Array, ""]
    cost_mf_se: Float[Array, ""]
    cost_fne: Float[Array, ""]
    cost_fne_se: Float[Array, ""]
    cost_diff: Float[Array, ""]
    cost_diff_se: Float[Array, ""]


def window_moments(
    encoder: RFNEncoder, params: RFNParams, x: Float[Array, "T d_x"]
) -> tuple[Float[Array, "T d p"], Float[Array, "T d p d p"]]:
    """Exact moments `(M_s, 𝕊_s)` of the shared encoder's features at the inputs `x_s`."""
    return jax.vmap(encoder.moments, in_axes=(None, 0))(params, x)


def mc_bytes_per_agent(T: int, d: int, p: int, d_x: int) -> int:
    """Bytes per agent of one `monte_carlo` replication, a lower bound: the window's
    features (T d p), both policies' predictions and costs over the window (4 (T + 1) d) and
    the encoder parameters (d d_x + d p), float64."""
    return 8 * (T * d * p + 4 * (T + 1) * d + d * d_x + d * p)


def _mean_se(a, n):
    mean = jnp.mean(a, axis=-1)
    var = jnp.mean(jnp.square(a - mean[..., None]), axis=-1)
    return mean, jnp.sqrt(var / jnp.maximum(n - 1, 1))


def simulate_window(
    encoder: RFNEncoder,
    params: RFNParams,
    x: Float[Array, "T d_x"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    n_agents: int,
    *,
    key: PRNGKeyArray,
    batch_size: int | None = None,
) -> MonteCarloResult:
    """Simulate one window with N agents under the mean-field and the N-player Nash policies.

    Args:
        encoder, params: the encoder every agent shares (H1); agent i's noise at step s is
            `encoder.noise(keys[:, i], s)`, `keys` two random words per agent drawn from
            `key`, identical for both policies.
        x: the inputs `x_s`, `s = 0..T−1`; y: the targets `y_0..y_T` (common start `y_0`).
        cost: the cost weights.
        n_agents: N (static: it sets the array shapes).
        batch_size: process agents in chunks (`map_agents`).

    Returns:
        A `MonteCarloResult`.
    """
    check_n_agents(n_agents)
    n = int(n_agents)
    T, d = y.shape[0] - 1, y.shape[1]
    dtype = y.dtype
    M, S = window_moments(encoder, params, x)
    mf = solve_mean_field(M, S, y, cost)
    fne = solve_fne_reduced(M, S, y, cost, n)
    rho = window_weights(cost.alpha, T, dtype)
    agent_keys = jr.bits(key, (2, n), jnp.uint32)  # two-word noise keys, agent axis last
    start = jnp.broadcast_to(y[0][:, None], (d, n))

    def policy_step(yhat, z, K_s, L_s, h_s, y_next, rho_s):
        ybar = jnp.mean(yhat, axis=-1)
        beta = map_agents(
            lambda yh: mean_field_control(K_s, L_s, h_s, yh, ybar), yhat, batch_size=batch_size
        )
        new = map_agents(advance, yhat, z, beta, batch_size=batch_size)
        new_bar = jnp.mean(new, axis=-1)
        stage = rho_s * (
            cost.q * jnp.sum(jnp.square(y_next[:, None] - new), axis=0)
            + cost.lam * jnp.sum(jnp.square(new - new_bar[:, None]), axis=0)
            + cost.gamma * jnp.sum(jnp.square(beta), axis=0)
        )
        return new, stage

    def step(carry, xs):
        yh_mf, yh_fne, c_mf, c_fne = carry
        s, x_s, y_next, rho_s, K, L, g, KN, LN, hN = xs
        draw = lambda k: encoder.features(params, x_s, encoder.noise(k, s))
        z = map_chunks(draw, agent_keys, batch_size=batch_size).astype(dtype)
        yh_mf, st_mf = policy_step(yh_mf, z, K, L, g, y_next, rho_s)
        yh_fne, st_fne = policy_step(yh_fne, z, KN, LN, hN, y_next, rho_s)
        out = (*_mean_se(yh_mf, n), *_mean_se(yh_fne, n))
        return (yh_mf, yh_fne, c_mf + st_mf, c_fne + st_fne), out

    zeros = jnp.zeros((n,), dtype)
    xs = (jnp.arange(T), x, y[1:], rho, mf.K, mf.L, mf.g, fne.K, fne.L, fne.h)
    (yh_mf, yh_fne, c_mf, c_fne), (m_mf, se_mf, m_fne, se_fne) = lax.scan(
        step, (start, start, zeros, zeros), xs
    )

    def terminal(yh):
        bar = jnp.mean(yh, axis=-1)
        return cost.q_T * jnp.sum(jnp.square(y[T][:, None] - yh), axis=0) + cost.lam_T * jnp.sum(
            jnp.square(yh - bar[:, None]), axis=0
        )

    c_mf, c_fne = c_mf + terminal(yh_mf), c_fne + terminal(yh_fne)
    zero_d = jnp.zeros((1, d), dtype)
    cat = lambda a, b: jnp.concatenate([a, b])
    mean_mf, se_cmf = _mean_se(c_mf, n)
    mean_fne, se_cfne = _mean_se(c_fne, n)
    diff, se_diff = _mean_se(c_mf - c_fne, n)
    return MonteCarloResult(
        n_agents=n,
        flow=mf.m,
        ybar_mf=cat(y[:1], m_mf),
        ybar_fne=cat(y[:1], m_fne),
        se_mf=cat(zero_d, se_mf),
        se_fne=cat(zero_d, se_fne),
        cost_mf=mean_mf,
        cost_mf_se=se_cmf,
        cost_fne=mean_fne,
        cost_fne_se=se_cfne,
        cost_diff=diff,
        cost_diff_se=se_diff,
    )


def monte_carlo(
    encoder: RFNEncoder,
    params: RFNParams,
    x: Float[Array, "T d_x"],
    y: Float[Array, "T+1 d"],
    cost: CostParams,
    n_agents: int,
    *,
    key: PRNGKeyArray,
    n_reps: int = 10,
    batch_size: int | None = None,
) -> MonteCarloResult:
    """`n_reps` independent replications of `simulate_window` (one after the other, so the
    memory stays O(N)); every array of the result gets a leading replication axis.

    Confidence intervals from the spread across replications are honest even though the
    agents of one run are correlated through `ȳ` (the within-run standard errors `*_se`
    assume independent agents and are only indicative)."""
    if not isinstance(n_reps, int) or n_reps < 2:
        raise ValueError(f"need at least two replications for an interval, got {n_reps=}")
    one = lambda k: simulate_window(
        encoder, params, x, y, cost, n_agents, key=k, batch_size=batch_size
    )
    return lax.map(one, jr.split(key, n_reps))
