"""`memoa_jax.data.preset`: each data set's default hyper-parameters (spec §10)."""

import equinox as eqx
import pytest

from memoa_jax.data import DATASETS, PRESETS, Preset, preset

# The values the CLI's `DATASET_DEFAULTS` held before they moved beside the data: results
# depend on them, so they must not change.
BEFORE = {
    "periodic": dict(alpha=1e-3, gamma=10.0, sigma=0.1, features=3, ridge_window=3, window=3),
    "logistic": dict(alpha=1e-4, gamma=15.0, sigma=0.1, features=5, ridge_window=3, window=3),
    "concept": dict(alpha=1e-4, gamma=15.0, sigma=0.1, features=5, ridge_window=3, window=3),
    "concept-drift": dict(alpha=1e-4, gamma=15.0, sigma=0.1, features=5, ridge_window=3, window=3),
    "ecb": dict(alpha=1e-2, gamma=10.0, sigma=1.0, features=6, ridge_window=5, window=2),
    "boc": dict(alpha=1e-2, gamma=10.0, sigma=1.0, features=6, ridge_window=5, window=2),
    "boc-val": dict(alpha=1e-2, gamma=10.0, sigma=1.0, features=6, ridge_window=5, window=2),
    "ett": dict(alpha=5.0, gamma=10.0, sigma=0.1, features=1, ridge_window=2, window=3),
    "ett-val": dict(alpha=5.0, gamma=10.0, sigma=0.1, features=1, ridge_window=2, window=3),
}


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_values_unchanged(name):
    p = preset(name)
    assert isinstance(p, Preset) and isinstance(p, eqx.Module)
    assert p.as_dict() == BEFORE[name]
    assert list(p.as_dict()) == list(BEFORE[name])  # the order the CLI prints them in


def test_every_data_set_has_a_preset():
    assert set(PRESETS) == set(DATASETS)


def test_unknown_name():
    with pytest.raises(ValueError, match="no hyper-parameter preset for data set 'nope'"):
        preset("nope")


def test_sizes_are_static_and_values_are_leaves():
    leaves = eqx.filter(preset("ett"), eqx.is_inexact_array_like)
    assert (leaves.alpha, leaves.gamma, leaves.sigma) == (5.0, 10.0, 0.1)
    with pytest.raises(Exception):  # frozen
        preset("ett").alpha = 1.0  # type: ignore[misc]


# FedMOE's greedy-client settings as `experiments/_common.py` held them before they moved here.
G1_BEFORE = {
    "periodic": dict(alpha=0.1, gamma=10.0, sigma=1.0, features=3, ridge_window=3),
    "logistic": dict(alpha=0.01, gamma=15.0, sigma=0.01, features=3, ridge_window=3),
    "concept": dict(alpha=0.01, gamma=15.0, sigma=0.01, features=3, ridge_window=3),
    "concept-drift": dict(alpha=0.01, gamma=15.0, sigma=0.01, features=3, ridge_window=3),
    "boc": dict(alpha=1.0, gamma=10.0, sigma=1.0, features=3, ridge_window=5),
    "boc-val": dict(alpha=1.0, gamma=10.0, sigma=1.0, features=3, ridge_window=5),
    "ett": dict(alpha=0.1, gamma=10.0, sigma=1.0, features=2, ridge_window=3),
    "ett-val": dict(alpha=0.1, gamma=10.0, sigma=1.0, features=2, ridge_window=3),
    "ecb": dict(alpha=1.0, gamma=10.0, sigma=1.0, features=3, ridge_window=5),
}


@pytest.mark.parametrize("name", sorted(G1_BEFORE))
def test_g1_values_unchanged(name):
    from memoa_jax.data import G1Preset, g1_preset

    p = g1_preset(name)
    assert isinstance(p, G1Preset) and isinstance(p, eqx.Module)
    assert p.as_dict() == G1_BEFORE[name]
    assert p.source


def test_g1_presets_cover_the_data_sets_and_flag_concept():
    from memoa_jax.data import G1_PRESETS, NO_FEDMOE_RECIPE, g1_preset

    assert set(G1_PRESETS) == set(DATASETS)
    assert g1_preset("concept").source == NO_FEDMOE_RECIPE["concept"]
    with pytest.raises(ValueError, match="no G1 preset for data set 'nope'"):
        g1_preset("nope")
