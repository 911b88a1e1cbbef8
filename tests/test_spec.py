"""`RunSpec` (its checks, its JSON form), `memoa_jax.build(spec)` and `memoa run --config`."""

import dataclasses
import json
import math

import equinox as eqx
import pytest

import memoa_jax as mj
from memoa_jax.cli import _parse, main
from memoa_jax.cli._build import spec_from_args

# a run of one cheap method on 29 prediction steps: one compilation, read from JAX's cache after
TINY = ["run", "--dataset", "periodic", "-n", "4", "--rows", "30", "--seeds", "1"]
TINY += ["--methods", "g4_follow_mean", "--no-progress"]


def _csv_spec() -> mj.RunSpec:
    return mj.RunSpec(
        data=mj.DataSpec(
            dataset=None,
            csv="series.csv",
            target=("y",),
            inputs=(),
            lags=(0, 1),
            target_lags=(0, 2),
            scale="max",
            rows=50,
        ),
        hyper=mj.HyperSpec(preset="boc", gamma=3.0, window=4),
        n_agents=7,
        seeds=2,
        seed=5,
        dtype="float32",
        state="lean",
        carry_draws=True,
        batch_size=3,
        methods=("memoa", "ogd_sgd", "fedmoe_game"),
        lam=-0.25,
        server="ridge",
        fedmoe_compat=True,
        g1_params="game",
    )


@pytest.mark.parametrize("spec", [mj.RunSpec(), _csv_spec()], ids=["default", "csv"])
def test_spec_dict_spec_round_trip(spec):
    record = spec.to_dict()
    assert record["spec_version"] == mj.SPEC_VERSION
    again = mj.RunSpec.from_dict(json.loads(json.dumps(record)))  # (tuples come back lists)
    assert again == spec
    assert again.to_dict() == record


def test_from_dict_takes_a_part_and_converts_integers():
    spec = mj.RunSpec.from_dict({"lam": 1, "data": {"dataset": "periodic", "rows": 30}})
    assert spec.lam == 1.0 and isinstance(spec.lam, float)
    assert spec.data == mj.DataSpec(dataset="periodic", rows=30)
    assert spec.hyper == mj.HyperSpec() and spec.n_agents == 1000


def R(**fields):  # (a spec made when the test runs, not when its list is)
    return lambda: mj.RunSpec(**fields)


def D(**fields):
    return lambda: mj.RunSpec(data=mj.DataSpec(**fields))


def H(**fields):
    return lambda: mj.RunSpec(hyper=mj.HyperSpec(**fields))


BAD = [
    (R(n_agents=0), "n_agents must be at least 1, got 0"),
    (R(n_agents=2.5), "n_agents must be an integer, got 2.5"),
    (R(seeds=0), "seeds must be at least 1, got 0"),
    (R(sync_every=0), "sync_every must be at least 1, got 0"),
    (R(batch_size=0), "batch_size must be at least 1, got 0"),
    (R(lam=math.inf), "lam must be a finite number, got inf"),
    (R(kappa="one"), "kappa must be a number, got 'one'"),
    (R(server="hedge", hedge_rate=0.0), "hedge_rate must be a finite number > 0, got 0.0"),
    (R(dtype="float16"), "dtype must be one of float64, float32; got 'float16'"),
    (R(state="thin"), "state must be one of stored, lean; got 'thin'"),
    (R(carry_draws=1), "carry_draws must be true or false, got 1"),
    (R(carry_draws=True), "carry_draws is an option of state lean (state stored carries"),
    (R(moments="mine"), "moments must be one of population, own; got 'mine'"),
    (R(encoder="esn", mc_samples=0), "mc_samples must be at least 1, got 0"),
    (R(methods=("memoa", "bogus")), "unknown method 'bogus'; choose from memoa,"),
    (R(methods=()), "methods is empty"),
    (R(methods=("memoa", "memoa")), "methods 'memoa,memoa': a method is repeated"),
    (R(methods=("fedmoe_game",), n_agents=40), "N ≤ 32, got n_agents 40"),
    (R(methods=("fedmoe_game",), n_agents=4, encoder="esn"), "it needs encoder rfn"),
    (R(fedmoe_compat=True), "fedmoe_compat applies to fedmoe_game: add it to methods"),
    (H(preset="ett"), "preset ett is an option of csv; dataset ecb"),
    (D(target=("y",)), "target is an option of csv"),
    (D(dataset="foo"), "unknown dataset 'foo'; choose one of: boc,"),
    (D(dataset=None), "give one data set: dataset None or csv None"),
    (D(rows=1), "rows must be at least 2, got 1"),
    (D(dataset=None, csv="a.csv", lags=(0, 0)), "lags (0, 0): a lag is repeated"),
    (D(dataset=None, csv="a.csv", lags=(-1,)), "lags (-1,): lags are integers >= 0"),
    (D(dataset=None, csv="a.csv", scale="log"), "scale must be one of none, max"),
    (H(window=0), "window must be at least 1, got 0"),
    (H(gamma=math.nan), "gamma must be a finite number, got nan"),
    (H(preset="nope"), "preset 'nope': choose one of boc,"),
]


@pytest.mark.parametrize("make, message", BAD, ids=[m for _, m in BAD])
def test_each_check_refuses_with_its_value(make, message):
    with pytest.raises(mj.SpecError) as e:
        make()
    assert message in str(e.value)
    assert isinstance(e.value, ValueError)


def test_from_dict_refuses_unknown_keys_and_versions():
    for record, message in (
        ({"n_agent": 3}, "unknown key 'n_agent' (known: data, hyper, n_agents,"),
        ({"data": {"dataset": "periodic", "row": 3}}, "unknown key 'data.row' (known:"),
        ({"spec_version": 2}, "spec_version 2: this version reads spec_version 1"),
        ({"hyper": 3}, "hyper must be a table, got 3"),
        ([1], "a spec is a table of values, got [1]"),
    ):
        with pytest.raises(mj.SpecError, match=None) as e:
            mj.RunSpec.from_dict(record)  # pyright: ignore[reportArgumentType]
        assert message in str(e.value), (str(e.value), message)


def test_error_names_fields_as_the_caller_says():
    with pytest.raises(mj.SpecError) as e:
        mj.RunSpec(learning_rate=math.inf)
    assert e.value.render(lambda k: f"--{k}") == "--learning_rate must be a finite number, got inf"


def test_build_makes_the_default_run_of_memoa_run():
    """The default `memoa run` (ECB, N = 1000): the simulations the CLI built before the
    spec, written out here, and the same from the command line's options (configurations
    compared, nothing compiled)."""
    from memoa_jax.cli import _parser
    from memoa_jax.cli._build import build
    from memoa_jax.data import g1_preset, load_dataset, preset

    built = mj.build(mj.RunSpec())
    data, hp, g1 = load_dataset("ecb"), preset("ecb"), g1_preset("ecb")
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=hp.gamma, alpha=hp.alpha)
    settings = dict(window=hp.window, ridge_window=hp.ridge_window)
    game = tuple(mj.make_method(n, cost, **settings) for n in mj.DEFAULT_METHODS)

    def sim(features, sigma, methods):
        encoder = mj.RFNEncoder(d=data.d, d_x=data.d_x, p=features, sigma=sigma)
        return mj.Simulation(
            n_agents=1000,
            encoder=encoder,
            methods=methods,
            server=mj.RidgeMixture(kappa=1.0, eta=1.0),
            cost=cost,
        )

    g1_cost = mj.CostParams(q=1.0, lam=0.5, gamma=g1.gamma, alpha=g1.alpha)
    want = (
        sim(hp.features, hp.sigma, tuple(m for m in game if m.name != "g1_ridge")),
        sim(
            g1.features,
            g1.sigma,
            (mj.make_method("g1_ridge", g1_cost, ridge_window=g1.ridge_window),),
        ),
    )
    assert eqx.tree_equal(built.sims, want) is True
    assert built.names == mj.DEFAULT_METHODS and built.fedmoe_game is None
    assert built.hp == dict(hp.as_dict(), g1=dict(g1.as_dict(), source=g1.source))
    from_args = build(_parser().parse_args(["run"]), comparators=True)
    assert from_args.spec == mj.RunSpec()
    assert eqx.tree_equal(from_args.sims, want) is True


def test_build_refuses_what_needs_the_data():
    spec = mj.RunSpec(data=mj.DataSpec("periodic", rows=4))
    with pytest.raises(mj.SpecError, match="window 3 needs more than 3 prediction steps"):
        mj.build(spec)


def test_runner_compiles_once_per_structure():
    """Seeds are run-time values: the program compiled first runs every seed."""
    import jax
    import jax.numpy as jnp

    spec = mj.RunSpec(
        data=mj.DataSpec("periodic", rows=12), n_agents=3, methods=("g4_follow_mean",)
    )
    built = mj.build(spec)
    x, y = jnp.asarray(built.data.x), jnp.asarray(built.data.y)
    runner = mj.Runner()
    first = runner.compile(built.sims[0], x, y)
    res = runner(built.sims, x, y, key=jax.random.key(1))
    assert list(res.summary) == ["g4_follow_mean"]
    assert runner.compile(built.sims[0], x, y) is first


def _results(out) -> dict:
    return json.loads((out / "results.json").read_text())


def test_run_config_reproduces_results_json_and_toml_with_overrides(tmp_path, capsys):
    """A run's results.json, given to `--config`, runs the same again, to the bit; a TOML
    spec with an option given on the command line runs the option's value."""
    first = _results(_ran(tmp_path, "o1", *TINY))
    assert mj.RunSpec.from_dict(first["spec"]).n_agents == 4
    again = _results(_ran(tmp_path, "o2", "run", "--config", str(tmp_path / "o1/results.json")))
    for key in ("summary", "steps", "spec", "config"):
        assert again[key] == first[key], key

    toml = tmp_path / "spec.toml"
    toml.write_text(
        'n_agents = 9\nseeds = 1\nmethods = ["g4_follow_mean"]\n'
        '[data]\ndataset = "periodic"\nrows = 30\n'
    )
    third = _results(_ran(tmp_path, "o3", "run", "--config", str(toml), "-n", "4"))
    assert third["spec"] == first["spec"]  # the file's values, and -n 4 over its n_agents
    assert third["summary"] == first["summary"]
    assert "override the file's values" in " ".join(_help(capsys).split())


def test_sweep_and_tune_take_a_run_config(tmp_path):
    """`memoa sweep --config` and `memoa tune --config` read a run's results.json: its data,
    methods and hyper-parameters, at the sweep's sizes; the sweep's point at the run's N is
    the run (its padded program: to round-off, as in test_sweep.py)."""
    first = _results(_ran(tmp_path, "o1", *TINY))
    config = ["--config", str(tmp_path / "o1/results.json")]
    out = _ran(tmp_path, "s1", "sweep", *config, "--sizes", "4")
    (point,) = [json.loads(line) for line in (out / "sweep.jsonl").read_text().splitlines()]
    assert (
        point["n_agents"] == 4
        and point["steps"] == 29
        and list(point["summary"]) == ["g4_follow_mean"]
    )
    for field, value in point["summary"]["g4_follow_mean"].items():
        want = first["summary"]["g4_follow_mean"].get(field)
        if isinstance(want, dict) and "per_seed" in want and value is not None:
            assert value == pytest.approx(want["per_seed"][0], rel=1e-10, abs=1e-14), field
    # tune builds its run from the same spec (`build(args)`): the file's values come
    # through its parsed options (the tune itself: test_cmd_tune.py)
    spec = spec_from_args(_parse(["tune", *config, "--steps", "1"]))
    assert spec.methods == ("g4_follow_mean",) and spec.n_agents == 4
    assert spec.data.dataset == "periodic" and spec.data.rows == 30
    assert spec == dataclasses.replace(spec_from_args(_parse(["run", *config])), seeds=spec.seeds)


def _ran(tmp_path, name, *argv):
    out = tmp_path / name
    assert main([*argv, "--no-progress", "--out", str(out)]) == 0
    return out


def _help(capsys) -> str:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("bad.toml", "n_agent = 3\n", "unknown key 'n_agent' (known: data, hyper"),
        ("bad.toml", "[data]\nrows = 1\n", "data.rows must be at least 2, got 1"),
        ("bad.toml", "n_agents = [", "not TOML"),
        ("bad.json", '{"methods": ["memoa", "g9"]}', "unknown method 'g9'"),
        ("results.json", '{"summary": {}}', 'a results.json without a "spec"'),
        ("missing.json", None, "no such file"),
    ],
)
def test_bad_config_file_is_one_line_exit_2(tmp_path, capsys, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["run", "--config", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--config {path}" in err[0] and message in err[0], err
    assert not out.exists()
