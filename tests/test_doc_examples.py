"""The `Examples` sections of the main API docstrings run as written (issue 28 item 7):
each is run with `doctest` and its printed output compared. The ones that compile the loop
take a minute on two CPU cores: slow-marked."""

import doctest

import pytest

import memoa_jax as mj
from memoa_jax import data


def _run_examples(obj, name: str):
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs={})
    examples = [e for t in tests for e in t.examples]
    assert len(examples) >= 3, f"{name}: no Examples section"
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    for t in tests:
        runner.run(t)
    result = runner.summarize(verbose=False)
    assert result.failed == 0 and result.attempted == len(examples), result


@pytest.mark.parametrize(
    "name", ["Simulation", "data.load_dataset"]
)  # no compilation: the default run
def test_quick_examples_run_as_written(name):
    obj = mj.Simulation if name == "Simulation" else data.load_dataset
    _run_examples(obj, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["simulate", "sweep", "tune"])
def test_examples_that_run_the_loop(name):
    _run_examples(getattr(mj, name), name)
