"""Nash verification (spec §5), kept apart from the simulator: does the decentralized
mean-field policy converge to the centralized N-player feedback Nash equilibrium (FNE)?

Inputs everywhere are one window's moments `M (T, d, p)`, `S (T, d, p, d, p)`, targets
`y (T+1, d)` and `memoa_jax.CostParams` (the same as `memoa_jax.solve_mean_field`).

* `solve_fne_reduced(M, S, y, cost, n)` — exact symmetric FNE `(K^N, L^N, h^N)` and its cost,
  O(1) in N; `n` may be traced, so `jax.vmap` over `n` solves an N-sweep in one call.
* `solve_fne_dense(M, S, y, cost, n)` — the stacked `Nd × Nd` recursions (O(T N⁴)): the
  oracle, and the baseline whose cost does not scale. `evaluate_dense`,
  `best_response_dense` and `stack_policy` are its stacked-profile companions.
* `evaluate_policy`, `best_response`, `exploitability` — exact expected cost of a symmetric
  linear profile `β = K ŷ + L ȳ + h`, agent 1's best response to it, and the ε-Nash gap
  (multiplicative noise, exact expectations, O(1) in N).
* `centralized_method(cost, ...)` — that equilibrium as a simulator method (`fne_gains`
  injected into `memoa_jax.MeanFieldGame(equilibrium="nash")`), run beside MEMOA.
* `nash_gap(M, S, y, cost, n)` — gain gap, ε_N and cost gap of the mean-field policy.
* `monte_carlo` / `simulate_window` — one window simulated with N agents under both
  policies on the same features (shared RFN encoder, exact moments), O(N) memory.
* `verify_convergence(window, cost, sizes, ...)` — all of the above over an N-sweep, with
  slopes and timings: the numbers `memoa verify` prints and writes (`fixture_window`,
  `rfn_window`: its two instances; `fit_slope`, `cost_gap_tail`, `mean_ci`: its statistics;
  `dense_bytes`, `mc_bytes_per_agent`: memory estimates to refuse what cannot fit).

`memoa_jax.solve_fne_reduced`, `memoa_jax.solve_fne_dense` and `memoa_jax.nash_gap` are also
re-exported at the top level; the CLI is `memoa verify`.
"""

from ._dense import DenseFNE as DenseFNE
from ._dense import best_response_dense as best_response_dense
from ._dense import dense_bytes as dense_bytes
from ._dense import evaluate_dense as evaluate_dense
from ._dense import solve_fne_dense as solve_fne_dense
from ._dense import stack_policy as stack_policy
from ._evaluate import BestResponse as BestResponse
from ._evaluate import NashGap as NashGap
from ._evaluate import best_response as best_response
from ._evaluate import evaluate_policy as evaluate_policy
from ._evaluate import exploitability as exploitability
from ._evaluate import mean_field_profile as mean_field_profile
from ._evaluate import nash_gap as nash_gap
from ._montecarlo import MonteCarloResult as MonteCarloResult
from ._montecarlo import mc_bytes_per_agent as mc_bytes_per_agent
from ._montecarlo import monte_carlo as monte_carlo
from ._montecarlo import simulate_window as simulate_window
from ._montecarlo import window_moments as window_moments
from ._reduced import FNESolution as FNESolution
from ._reduced import centralized_method as centralized_method
from ._reduced import fne_gains as fne_gains
from ._reduced import solve_fne_reduced as solve_fne_reduced
from ._verify import Window as Window
from ._verify import cost_gap_tail as cost_gap_tail
from ._verify import fit_slope as fit_slope
from ._verify import fixture_window as fixture_window
from ._verify import mean_ci as mean_ci
from ._verify import rfn_window as rfn_window
from ._verify import verify_convergence as verify_convergence
