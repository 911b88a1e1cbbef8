"""The lean loop against its draws and against an older checkout (issue 26): MEMOA alone,
float32, Logistic defaults (p = 5, d = 1, T = 3), per population size and chunk size.

Per point it prints and saves:
- agent-steps per second (best of `--repeat`), and with `--baseline DIR` (a checkout of an
  older commit, e.g. `git worktree add ../old <commit>`) the same program of that checkout
  timed in interleaved rounds in the same minutes, and the ratio `speedup_vs_previous`;
- Threefry hashes and standard normals per agent-step, counted from one step's jaxpr
  (`memoa_jax._counts.step_draw_counts`);
- XLA's bytes accessed, flops and temporary buffer bytes per agent of one lowered step
  (unchunked: XLA's cost analysis counts a loop body once), beside the carried bytes;
- the share of this machine's draw rate: hashes per second of the loop against the
  hashes (each with one erf⁻¹) per second of a bare chunked draw kernel timed in the same
  run.

    git worktree add ../wt-base 9a75742   # the commit before the one pass
    python experiments/bench_lean.py --baseline ../wt-base --out figures/bench_lean \
        --points 1e6:none,1e6:65536,1e7:65536,1e7:1048576 --steps 10 --repeat 3
    python experiments/bench_lean.py --baseline ../wt-base --out figures/bench_lean \
        --state stored --points 1e6:none,1e6:65536 --steps 10 --repeat 3
    git worktree add ../wt-issue26 c3c0881  # main when issue 26 was filed
    python experiments/bench_lean.py --baseline ../wt-issue26 --out figures/bench_lean \
        --name bench_lean_vs_c3c0881 --points 1e6:none,1e6:65536,1e7:65536,1e7:1048576 \
        --steps 10 --repeat 3
    python experiments/bench_lean.py --baseline ../wt-issue26 --out figures/bench_lean \
        --name bench_lean_carry_draws_vs_c3c0881 --carry-draws \
        --points 1e6:none,1e6:65536,1e7:65536,1e7:1048576 --steps 10 --repeat 3
    # item 2: 10^7 in chunks against 10^6 in one piece, interleaved rounds, no baseline
    python experiments/bench_lean.py --carry-draws --out figures/bench_lean \
        --name bench_lean_chunks_carry_draws --steps 10 --repeat 5 --points \
        1e6:none,1e7:65536,1e6:65536,1e6:none,1e7:65536,1e6:65536,1e6:none,1e7:65536
    # the chunk size at 10^7 (cache-sized chunks: --state lean's default on the CPU)
    python experiments/bench_lean.py --carry-draws --out figures/bench_lean \
        --name bench_lean_chunk_sizes_carry_draws --steps 10 --repeat 3 --points \
        1e7:16384,1e7:65536,1e7:262144,1e7:1048576,1e7:16384,1e7:65536,1e7:262144,1e7:1048576
    python experiments/bench_lean.py --out figures/bench_lean --name bench_lean_chunk_sizes \
        --steps 10 --repeat 3 --points 1e7:65536,1e7:1048576,1e7:65536,1e7:1048576

Timings are from the machine as it is: the load average is saved with them.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# the worker: one compiled lean MEMOA program of the checkout at sys.argv[1], timed once per
# "run" line on stdin (so that two checkouts' programs are timed in interleaved rounds)
WORKER = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import jax, jax.numpy as jnp
import memoa_jax as mj
assert mj.__file__.startswith(sys.argv[1]), (mj.__file__, sys.argv[1])
from memoa_jax.data import load_dataset
n, steps, bs, state = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
carry = {"carry_draws": True} if sys.argv[6] == "1" else {}  # (older checkouts: no option)
bs = None if bs == "none" else int(bs)
data = load_dataset("logistic", n_rows=steps + 1)
cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
enc = mj.RFNEncoder(d=1, d_x=data.d_x, p=5, sigma=0.1)
memoa = mj.default_methods(cost, window=3, ridge_window=3)[:1]
sim = mj.Simulation(n, enc, memoa, mj.RidgeMixture(), cost, "h2", dtype=jnp.float32,
                    state=state, batch_size=bs, **carry)
x, y = jnp.asarray(data.x, jnp.float32), jnp.asarray(data.y, jnp.float32)
import inspect  # checkouts from before the loop's Status (issue 25) have no `throw`
kw = {"throw": False} if "throw" in inspect.signature(mj.simulate).parameters else {}
fn = jax.jit(lambda x_, y_, k: mj.simulate(sim, x_, y_, key=k, **kw))
exe = fn.lower(x, y, jax.random.key(0)).compile()
res = jax.block_until_ready(exe(x, y, jax.random.key(0)))
print("ready", float(res.summary["memoa"].worst_rmse), flush=True)
for line in sys.stdin:
    t0 = time.perf_counter()
    jax.block_until_ready(exe(x, y, jax.random.key(0)))
    print(time.perf_counter() - t0, flush=True)
"""


class Worker:
    def __init__(self, tree: Path, n: int, steps: int, batch_size, state: str, carry: bool):
        args = [str(tree), str(n), str(steps), str(batch_size or "none"), state, str(int(carry))]
        env = dict(os.environ, JAX_ENABLE_X64="0")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            raise RuntimeError(f"the worker for {tree} at N={n} did not start")
        self.worst_rmse = float(line[1])

    def run(self) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self):
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def counts(n: int, batch_size, carry_draws: bool) -> dict:
    """The step's draws and XLA figures (`memoa_jax.bench.lean_step_figures`) and the
    carried bytes, for MEMOA alone as the workers run it."""
    import jax.numpy as jnp

    import memoa_jax as mj
    from memoa_jax.bench import lean_step_figures

    cost = mj.CostParams(q=1.0, lam=0.5, gamma=15.0, alpha=1e-4)
    enc = mj.RFNEncoder(d=1, d_x=1, p=5, sigma=0.1)
    memoa = mj.default_methods(cost, window=3, ridge_window=3)[:1]
    sim = mj.Simulation(
        n, enc, memoa, mj.RidgeMixture(), cost, "h2", dtype=jnp.float32, state="lean",
        batch_size=batch_size, carry_draws=carry_draws,
    )  # fmt: skip
    return lean_step_figures(sim) | dict(carried_bytes_per_agent=mj.carry_bytes_per_agent(sim))


def _commit(tree: Path) -> str:
    """The commit checked out at `tree` (`+dirty` with uncommitted changes)."""
    git = ["git", "-C", str(tree)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    return head.stdout.strip() + ("+dirty" if dirty else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", default="1e6:none,1e7:1048576,1e7:65536,1e7:16384",
                    help="N:batch_size pairs (none: unchunked)")  # fmt: skip
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--state", default="lean", choices=("lean", "stored"))
    ap.add_argument(
        "--carry-draws",
        action="store_true",
        help="this checkout's lean loop with Simulation(carry_draws=True)",
    )
    ap.add_argument("--baseline", type=Path, help="an older checkout to time beside this one")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / f"bench_lean-{int(time.time())}")
    ap.add_argument("--name", help="the JSON file's stem (default bench_<state>)")
    args = ap.parse_args(argv)
    if args.carry_draws and args.state != "lean":
        ap.error(f"--carry-draws is an option of --state lean, got --state {args.state}")
    points = []
    for item in args.points.split(","):
        n, bs = item.split(":")
        points.append((int(float(n)), None if bs == "none" else int(float(bs))))
    from memoa_jax.bench import draw_rate

    load_before = os.getloadavg()
    rate = draw_rate()
    print(f"draw rate of this machine: {rate:.3g} hashes (+ erf⁻¹) per second", flush=True)
    rows = []
    for n, bs in points:
        trees = {"this": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
        workers = {
            k: Worker(t, n, args.steps, bs, args.state, args.carry_draws and k == "this")
            for k, t in trees.items()
        }
        times = {k: [] for k in workers}
        for _ in range(args.repeat):  # interleaved rounds
            for k, w in workers.items():
                times[k].append(w.run())
        for w in workers.values():
            w.close()
        row = dict(n_agents=n, batch_size=bs, state=args.state, steps=args.steps,
                   carry_draws=args.carry_draws)  # fmt: skip
        for k in workers:
            row[f"{k}_agent_steps_per_s"] = n * args.steps / min(times[k])
            row[f"{k}_runs_s"] = times[k]
            row[f"{k}_worst_rmse"] = workers[k].worst_rmse
        if args.baseline:
            row["speedup_vs_previous"] = min(times["baseline"]) / min(times["this"])
        if args.state == "lean":
            row |= counts(n, bs, args.carry_draws)
            hashes_per_s = row["this_agent_steps_per_s"] * row["hashes_per_agent_step"]
            row["draw_rate_share"] = hashes_per_s / rate
        rows.append(row)
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}
        print({k: v for k, v in shown.items() if not k.endswith("_runs_s")}, flush=True)
    record = dict(
        command=" ".join(["python", "experiments/bench_lean.py", *(argv or sys.argv[1:])]),
        commit=_commit(ROOT),
        baseline_commit=_commit(args.baseline) if args.baseline else None,
        machine_draw_rate_hashes_per_s=rate,
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        points=rows,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name or 'bench_' + args.state}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
