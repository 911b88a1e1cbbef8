"""Chunks inside a shard against one GSPMD program (issue 24 item 3), on forced CPU devices:
the all-reduces per step of each compiled loop, and the run time of each.

    XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python experiments/shard_chunks.py --count -n 1200 --batch-size 70
    XLA_FLAGS=--xla_force_host_platform_device_count=4 \
        python experiments/shard_chunks.py --time -n 40000 --rows 200 --batch-size 2500

`--count`: for each path (GSPMD: a mesh without chunks; chunked: a mesh with `batch_size`,
each device running its own chunk loops under `jax.shard_map`), the jitted `simulate`
(`throw=False`, one scan) is compiled and the all-reduces, all-gathers and collective
permutes of its time loop are counted: the collectives reachable from the body of each
top-level while loop whose trip count is a run of steps (the lean loop has two: its
warm-up and the rest), one step's worth. `--time`: each path's program run `--repeat`
times (best of), compile timed apart; the load average (`os.getloadavg`) printed beside.
Logistic series, float64, MEMOA alone or the five default methods (`--methods`).
"""

import argparse
import json
import os
import re
import time

import jax
import jax.numpy as jnp
import jax.random as jr

jax.config.update("jax_enable_x64", True)

import memoa_jax as mj  # noqa: E402
from memoa_jax.data import load_dataset  # noqa: E402

COLLECTIVES = ("all-reduce", "all-gather", "collective-permute", "all-to-all")


def build(n: int, n_methods: int, state: str, batch_size: int | None) -> mj.Simulation:
    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    enc = mj.RFNEncoder(d=1, d_x=1, p=4, sigma=0.1)
    methods = mj.default_methods(cost)[:n_methods]
    return mj.Simulation(n, enc, methods, state=state, batch_size=batch_size)


def program(sim: mj.Simulation, mesh):
    return jax.jit(lambda x, y, k: mj.simulate(sim, x, y, key=k, mesh=mesh, throw=False))


def _computations(hlo: str) -> dict[str, list[str]]:
    comps, name = {}, None
    for line in hlo.splitlines():
        if line and not line.startswith(" ") and "{" in line:
            name = line.split(" ")[1 if line.startswith("ENTRY") else 0].lstrip("%")
            comps[name] = []
        elif name is not None:
            comps[name].append(line)
    return comps


def _reachable(comps, name: str, seen: set) -> list[str]:
    if name in seen or name not in comps:
        return []
    seen.add(name)
    lines = list(comps[name])
    for line in comps[name]:
        for callee in re.findall(
            r"(?:calls|body|condition|to_apply|branch_computations)="
            r"\{?%?([\w.\-]+(?:, %?[\w.\-]+)*)\}?",
            line,
        ):
            for c in callee.split(","):
                lines += _reachable(comps, c.strip().lstrip("%"), seen)
    return lines


def step_collectives(hlo: str, n_steps: int) -> list[dict]:
    """Per time loop (a top-level while whose trip count is part of the `n_steps`), how many
    of each collective one step runs."""
    comps = _computations(hlo)
    entry = next(ln for ln in hlo.splitlines() if ln.startswith("ENTRY")).split(" ")[1]
    entry = entry.lstrip("%")
    loops, trips = [], set(re.findall(r'"known_trip_count":\{"n":"(\d+)"', "\n".join(comps[entry])))
    for line in comps[entry]:
        if " while(" not in line:
            continue
        trip = re.search(r'"known_trip_count":\{"n":"(\d+)"', line)
        body = re.search(r"body=%?([\w.\-]+)", line)
        if trip is None or body is None:
            continue
        t = int(trip.group(1))
        if t != n_steps and str(n_steps - t) not in trips:  # not the time loop (the lean
            continue  # loop's two: a warm-up and the rest)
        ops = _reachable(comps, body.group(1), set())
        counts = {c: sum(f" {c}(" in op or f" {c}-start(" in op for op in ops) for c in COLLECTIVES}
        loops.append(dict(steps=t, **counts))
    return loops


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", action="store_true")
    ap.add_argument("--time", action="store_true")
    ap.add_argument("-n", type=int, default=1200)
    ap.add_argument("--rows", type=int, default=40)
    ap.add_argument("--batch-size", type=int, default=70)
    ap.add_argument("--methods", type=int, default=1, help="1: MEMOA alone; 5: all five")
    ap.add_argument("--state", default="stored", choices=("stored", "lean"))
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    devices = len(jax.devices())
    mesh = jax.make_mesh((devices,), ("agents",))
    data = load_dataset("logistic", n_rows=a.rows)
    x, y, key = jnp.asarray(data.x), jnp.asarray(data.y), jr.key(0)
    out = dict(
        devices=devices,
        n=a.n,
        rows=a.rows,
        methods=a.methods,
        state=a.state,
        batch_size=a.batch_size,
    )
    for path, bs in (("gspmd", None), ("chunked", a.batch_size)):
        fn = program(build(a.n, a.methods, a.state, bs), mesh)
        t0 = time.perf_counter()
        exe = fn.lower(x, y, key).compile()
        out[f"{path}_compile_s"] = round(time.perf_counter() - t0, 2)
        if a.count:
            out[f"{path}_per_step"] = step_collectives(exe.as_text(), a.rows - 1)
        if a.time:
            load = os.getloadavg()[0]
            jax.block_until_ready(exe(x, y, key))
            runs = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                jax.block_until_ready(exe(x, y, key))
                runs.append(time.perf_counter() - t0)
            out[f"{path}_run_s"] = round(min(runs), 3)
            out[f"{path}_load"] = f"{load:.2f} -> {os.getloadavg()[0]:.2f}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
