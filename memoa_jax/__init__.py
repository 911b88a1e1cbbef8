"""memoa_jax — MEMOA: massive mixtures of online agents via mean-field decentralized Nash
equilibria (Yang, Emerson, Tavakoli, Kratsios, 2026), in JAX.

The public API is what this module re-exports. The re-exports are imported on first use
(PEP 562 `__getattr__`), so that `memoa --help` and `import memoa_jax.data` do not import JAX:
the block under `TYPE_CHECKING` is the list, read by type checkers and by `_lazy` alike.
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:
    from . import nash as nash
    from ._agents import Population as Population
    from ._agents import map_agents as map_agents
    from ._agents import mean_field_control as mean_field_control
    from ._agents import ridge_control as ridge_control
    from ._build import Built as Built
    from ._build import build as build
    from ._build import load_data as load_data
    from ._encoders import ENCODERS as ENCODERS
    from ._encoders import AbstractEncoder as AbstractEncoder
    from ._encoders import ESNEncoder as ESNEncoder
    from ._encoders import ESNParams as ESNParams
    from ._encoders import RFNEncoder as RFNEncoder
    from ._encoders import RFNParams as RFNParams
    from ._features import AbstractFeatures as AbstractFeatures
    from ._features import AgentDraws as AgentDraws
    from ._features import FeatureRing as FeatureRing
    from ._features import Features as Features
    from ._features import RecomputedFeatures as RecomputedFeatures
    from ._features import StoredFeatures as StoredFeatures
    from ._fedmoe_game import FedmoeGameResult as FedmoeGameResult
    from ._fedmoe_game import FedmoeGameSolution as FedmoeGameSolution
    from ._fedmoe_game import fedmoe_game_on_features as fedmoe_game_on_features
    from ._fedmoe_game import fedmoe_game_summary as fedmoe_game_summary
    from ._fedmoe_game import replay_fedmoe_game as replay_fedmoe_game
    from ._fedmoe_game import simulate_fedmoe_game as simulate_fedmoe_game
    from ._fedmoe_game import solve_fedmoe_game as solve_fedmoe_game
    from ._kernels import Kernels as Kernels
    from ._loop import Run as Run
    from ._loop import SimCarry as SimCarry
    from ._loop import agent_draws as agent_draws
    from ._loop import carry_bytes_per_agent as carry_bytes_per_agent
    from ._loop import init_agents as init_agents
    from ._loop import simulate as simulate
    from ._mean_field import CostParams as CostParams
    from ._mean_field import MeanFieldSolution as MeanFieldSolution
    from ._mean_field import best_response_to_flow as best_response_to_flow
    from ._mean_field import nce_fixed_point as nce_fixed_point
    from ._mean_field import solve_mean_field as solve_mean_field
    from ._mean_field import window_weights as window_weights
    from ._methods import DEFAULT_METHODS as DEFAULT_METHODS
    from ._methods import METHODS as METHODS
    from ._methods import AbstractEquilibrium as AbstractEquilibrium
    from ._methods import AbstractMeanField as AbstractMeanField
    from ._methods import AbstractMethod as AbstractMethod
    from ._methods import AbstractMoments as AbstractMoments
    from ._methods import AbstractReplayBase as AbstractReplayBase
    from ._methods import AbstractReplayControl as AbstractReplayControl
    from ._methods import FlowMean as FlowMean
    from ._methods import FollowTheMean as FollowTheMean
    from ._methods import GainsControl as GainsControl
    from ._methods import LocalRidge as LocalRidge
    from ._methods import MeanFieldEquilibrium as MeanFieldEquilibrium
    from ._methods import MeanFieldGame as MeanFieldGame
    from ._methods import MethodState as MethodState
    from ._methods import NamedMethod as NamedMethod
    from ._methods import NashEquilibrium as NashEquilibrium
    from ._methods import ObservedBase as ObservedBase
    from ._methods import OnePass as OnePass
    from ._methods import OnlineGradient as OnlineGradient
    from ._methods import OwnBase as OwnBase
    from ._methods import OwnMoments as OwnMoments
    from ._methods import PopulationMoments as PopulationMoments
    from ._methods import RealizedMean as RealizedMean
    from ._methods import ReplayControl as ReplayControl
    from ._methods import ReplayEnd as ReplayEnd
    from ._methods import StepContext as StepContext
    from ._methods import default_methods as default_methods
    from ._methods import greedy_step as greedy_step
    from ._methods import make_method as make_method
    from ._metrics import DIVERGED_FACTOR as DIVERGED_FACTOR
    from ._metrics import SimResult as SimResult
    from ._metrics import StepStats as StepStats
    from ._metrics import Summary as Summary
    from ._metrics import format_rmse as format_rmse
    from ._metrics import is_diverged as is_diverged
    from ._metrics import persistence_rmse as persistence_rmse
    from ._mixture import AbstractServer as AbstractServer
    from ._mixture import AbstractStatelessServer as AbstractStatelessServer
    from ._mixture import HedgeMixture as HedgeMixture
    from ._mixture import RidgeMixture as RidgeMixture
    from ._mixture import ridge_weights as ridge_weights
    from ._mixture import ridge_weights_dense as ridge_weights_dense
    from ._moments import rfn_moments as rfn_moments
    from ._moments import second_moment_operator as second_moment_operator
    from ._progress import AbstractProgressMeter as AbstractProgressMeter
    from ._progress import CallbackProgressMeter as CallbackProgressMeter
    from ._progress import NoProgressMeter as NoProgressMeter
    from ._runner import Compiled as Compiled
    from ._runner import Runner as Runner
    from ._simulation import Simulation as Simulation
    from ._spec import SPEC_VERSION as SPEC_VERSION
    from ._spec import DataSpec as DataSpec
    from ._spec import HyperSpec as HyperSpec
    from ._spec import RunSpec as RunSpec
    from ._spec import SpecError as SpecError
    from ._status import RESULTS as RESULTS
    from ._status import SimulationError as SimulationError
    from ._status import Status as Status
    from ._sweep import SweepPoint as SweepPoint
    from ._sweep import bucket_slots as bucket_slots
    from ._sweep import sweep as sweep
    from ._tune import TuneResult as TuneResult
    from ._tune import objective as objective
    from ._tune import step_memory as step_memory
    from ._tune import tunable as tunable
    from ._tune import tune as tune
    from ._tune import with_params as with_params
    from .checkpoint import CheckpointError as CheckpointError
    from .checkpoint import checkpoint_step as checkpoint_step
    from .checkpoint import load_checkpoint as load_checkpoint
    from .checkpoint import save_checkpoint as save_checkpoint
    from .nash import nash_gap as nash_gap
    from .nash import solve_fne_dense as solve_fne_dense
    from .nash import solve_fne_reduced as solve_fne_reduced

__getattr__, __dir__ = lazy_exports(__name__, __file__)
