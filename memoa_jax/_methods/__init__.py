"""Client update rules run by the online loop: the method protocol, MEMOA and the baselines
(spec §4, §7).

Every method owns one prediction state per agent and, at step `t`, returns the state it
builds on, its control `β_t` and the next prediction `ŷ_{t+1}`. All of them see the same
data and the same feature draws `Zⁱ_t`, so they run side by side in one scan.

* `_context` — what the loop and a method exchange: `StepContext`, `MethodState`, `OnePass`;
* `_base` — `AbstractMethod`, the protocol (`init`, `step`, and what a method needs from
  the loop: `history`, `needs_moments`, ...);
* `_greedy` — `greedy_step`, FedMOE's greedy ridge step (G1's, G4's, MEMOA's warm-up);
* one final method per file: `MeanFieldGame` (MEMOA, G2, G3 and the centralized
  comparator), `LocalRidge` (G1), `FollowTheMean` (G4), `OnlineGradient`;
* `_equilibria`, `_readings` — the strategies of `MeanFieldGame`'s options;
* `_registry` — names → classes: `METHODS`, `default_methods`, the strategies' names.

Imports are lazy (`memoa_jax._lazy`), so that the registry's names are read without JAX.
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

if TYPE_CHECKING:
    from ._base import AbstractMethod as AbstractMethod
    from ._context import MethodState as MethodState
    from ._context import OnePass as OnePass
    from ._context import StepContext as StepContext
    from ._equilibria import AbstractEquilibrium as AbstractEquilibrium
    from ._equilibria import AbstractMeanField as AbstractMeanField
    from ._equilibria import AbstractMoments as AbstractMoments
    from ._equilibria import FlowMean as FlowMean
    from ._equilibria import MeanFieldEquilibrium as MeanFieldEquilibrium
    from ._equilibria import NashEquilibrium as NashEquilibrium
    from ._equilibria import OwnMoments as OwnMoments
    from ._equilibria import PopulationMoments as PopulationMoments
    from ._equilibria import RealizedMean as RealizedMean
    from ._follow_the_mean import FollowTheMean as FollowTheMean
    from ._greedy import LAPACK_CHUNK as LAPACK_CHUNK
    from ._greedy import greedy_step as greedy_step
    from ._local_ridge import LocalRidge as LocalRidge
    from ._mean_field_game import MeanFieldGame as MeanFieldGame
    from ._online_gradient import OnlineGradient as OnlineGradient
    from ._readings import AbstractReplayBase as AbstractReplayBase
    from ._readings import AbstractReplayControl as AbstractReplayControl
    from ._readings import GainsControl as GainsControl
    from ._readings import ObservedBase as ObservedBase
    from ._readings import OwnBase as OwnBase
    from ._readings import ReplayControl as ReplayControl
    from ._readings import ReplayEnd as ReplayEnd
    from ._registry import DEFAULT_METHODS as DEFAULT_METHODS
    from ._registry import METHODS as METHODS
    from ._registry import NamedMethod as NamedMethod
    from ._registry import default_methods as default_methods
    from ._registry import make_method as make_method

__getattr__, __dir__ = lazy_exports(__name__, __file__)
