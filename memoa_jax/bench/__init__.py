"""The benchmarks of `memoa bench`: throughput of the online loop and of the bare policy
step, against NumPy, a per-agent Python loop and the machine's copy-bandwidth roofline.

Problem (spec §10, FedMOE logistic defaults): the Logistic series (first `--steps` + 1 rows),
H2 random-feature agents (d = 1, p = 5, σ = .1), q = 1, λ = .5, γ = 15, α = 1e−4, T = T_c = 3,
constrained-ridge server; all five methods (MEMOA, G1–G4) in one loop.

* full loop: `simulate` compiled once per N (tracing and lowering, XLA's compilation and the
  lowered program's StableHLO size reported apart, per state), run `--repeat` times (the
  minimum is reported) vs `reference.simulate_numpy` (vectorised float64 NumPy, the same
  protocol) up to `--numpy-max` agents. agent-steps/s = N · steps / run time. The states:
  `stored`, `lean`, and with `--carry-draws` the lean one carrying its draws (`state_label`).
* policy step: `ŷ' = ŷ + Z(Kŷ + Lȳ + g)` with `ȳ` the population mean, the decentralized
  MEMOA step itself (the same `mean_field_update` every replay step of the loop runs), vs
  NumPy and, up to `--python-max` agents, a Python loop over agents.
* Nash: the dense centralized N-player Nash solve (O(T N⁴)) vs the mean-field solve and
  the exact reduced Nash solve at N = 10⁹, on one window of the same problem.
* roofline: the policy step must read `Z` (d·p numbers) and `ŷ` (d) and write `ŷ'` (d) per
  agent; its floor is those bytes over the copy bandwidth measured here (`a + 1` on a
  `--copy-mib` array: one read, one write; a step that mostly reads can exceed it, since a
  copy also reads each cache line it writes). For the full loop the floor is the loop carry
  (`memoa_jax.carry_bytes_per_agent`, measured from its shapes, stored or lean) read once
  per step; XLA's own estimate of bytes accessed is printed beside it.

`memoa bench` parses, calls these and prints; the figures of a run are in its `bench.json`.
"""

from ._problem import COST as COST
from ._problem import D_X as D_X
from ._problem import RIDGE_WINDOW as RIDGE_WINDOW
from ._problem import SIGMA as SIGMA
from ._problem import WINDOW as WINDOW
from ._problem import D as D
from ._problem import P as P
from ._problem import bytes_per_agent as bytes_per_agent
from ._problem import make_simulation as make_simulation
from ._problem import policy_bytes_per_agent as policy_bytes_per_agent
from ._problem import policy_inputs as policy_inputs
from ._problem import policy_step as policy_step
from ._timing import best_time as best_time
from ._timing import copy_bandwidth as copy_bandwidth
from ._timing import draw_rate as draw_rate
from ._timing import lean_step_figures as lean_step_figures
from ._timing import mark_overhead as mark_overhead
from ._timing import measure_loops as measure_loops
from ._timing import measure_policy as measure_policy
from ._timing import state_label as state_label
from ._timing import time_kernels as time_kernels
from ._timing import time_loop as time_loop
from ._timing import time_nash_solves as time_nash_solves
from ._timing import time_numpy_loop as time_numpy_loop
from ._timing import time_policy as time_policy
