#!/usr/bin/env bash
# The device check (docs/performance.md, "GPU" and "Lean agents"): one NVIDIA H100/H200, at
# most 8 minutes, every output under one folder. Run from the repository root, with a CUDA
# jaxlib installed:
#
#     OUT=runs/device-check bash experiments/device_check.sh
#
# Each part has its own time limit, so a slow part cannot eat the next one's; the limits
# add up to 465 s (7.75 minutes). What each part measures:
#   1. the GPU and the JAX devices it sees (nvidia-smi, jax.devices());
#   2. `memoa bench` in float32, N = 10^6..10^8, stored and lean state: agent-steps/s, carried
#      bytes per agent, XLA's bytes accessed, the bare policy step against the copy bandwidth
#      measured on that GPU;
#   3. the lean loop at 10^7 in float32, tuned, plain, and without each of two tricks tuned
#      for XLA:CPU: `rows` (the (1, N) row form against the vmapped one-agent form) and
#      `apart` (re-read values computed into memory rather than fused into their readers);
#   4. the bench of 2 in float64;
#   5. a lean MEMOA-alone run at N = 10^9 in float32 on a short series.
set -uo pipefail
OUT=${OUT:-runs/device-check-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1

nvidia-smi || echo "no nvidia-smi"
python -c "import jax; print('jax', jax.__version__, jax.devices())"
if ! python -c "import jax, sys; sys.exit(jax.devices()[0].platform != 'gpu')"; then
    echo "JAX sees no GPU: install a CUDA jaxlib (pip install 'jax[cuda12]') first"
    exit 1
fi
common=(--steps 20 --repeat 2 --dense-sizes none --numpy-max 0 --python-max 0 --no-progress)

timeout 120 memoa bench --dtype float32 --sizes 1e6,1e7,1e8 --state both \
    "${common[@]}" --out "$OUT/bench-float32"
echo "bench float32: exit $?"
timeout 120 memoa bench --dtype float32 --sizes 1e7 --loop-max 0 --state lean --kernels both \
    --kernels-n 1e7 --tricks rows,apart "${common[@]}" --out "$OUT/kernels-float32-lean"
echo "kernels float32 lean: exit $?"
timeout 75 memoa bench --dtype float64 --sizes 1e6,1e7,1e8 --state both \
    "${common[@]}" --out "$OUT/bench-float64"
echo "bench float64: exit $?"
timeout 150 memoa run -n 1e9 --methods memoa --dtype float32 --state lean --seeds 1 \
    --dataset logistic --rows 12 --no-progress --out "$OUT/run-1e9-lean"
echo "run 1e9 lean: exit $?"
ls -R "$OUT"
