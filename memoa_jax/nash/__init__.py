"""Nash verification (spec §5), kept apart from the simulator."""

from ._dense import DenseFNE as DenseFNE
from ._dense import best_response_dense as best_response_dense
from ._dense import evaluate_dense as evaluate_dense
from ._dense import solve_fne_dense as solve_fne_dense
from ._dense import stack_policy as stack_policy
from ._reduced import FNESolution as FNESolution
from ._reduced import solve_fne_reduced as solve_fne_reduced
from ._evaluate import BestResponse as BestResponse
from ._evaluate import NashGap as NashGap
from ._evaluate import best_response as best_response
from ._evaluate import evaluate_policy as evaluate_policy
from ._evaluate import exploitability as exploitability
from ._evaluate import mean_field_profile as mean_field_profile
from ._evaluate import nash_gap as nash_gap
from ._montecarlo import MonteCarloResult as MonteCarloResult
from ._montecarlo import monte_carlo as monte_carlo
from ._montecarlo import simulate_window as simulate_window
from ._montecarlo import window_moments as window_moments
