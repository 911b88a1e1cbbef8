#!/usr/bin/env bash
# The device check (docs/performance.md, "GPU" and "Lean agents"): one NVIDIA H100/H200, at
# most 8 minutes, every output under one folder. Run from the repository root, with a CUDA
# jaxlib installed:
#
#     OUT=runs/device-check bash experiments/device_check.sh
#
# Each part has its own time limit, so a slow part cannot eat the next one's; the limits
# add up to 7.5 minutes. What each part measures:
#   1. the GPU and the JAX devices it sees (nvidia-smi, jax.devices());
#   2. `memoa bench` in float32, N = 10^6..10^8, stored and lean state: agent-steps/s, carried
#      bytes per agent, XLA's bytes accessed, the bare policy step against the copy bandwidth
#      measured on that GPU, and every kernel trick against its plain form at 10^7 (the row
#      form against the vmapped one-agent form among them: the row form was tuned for XLA:CPU);
#   3. the same in float64, without the kernel comparison;
#   4. a lean MEMOA-alone run at N = 10^9 in float32 on a short series.
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

timeout 180 memoa bench --dtype float32 --sizes 1e6,1e7,1e8 --state both --kernels both \
    --kernels-n 1e7 "${common[@]}" --out "$OUT/bench-float32"
echo "bench float32: exit $?"
timeout 120 memoa bench --dtype float64 --sizes 1e6,1e7,1e8 --state both \
    "${common[@]}" --out "$OUT/bench-float64"
echo "bench float64: exit $?"
timeout 150 memoa run -n 1e9 --methods memoa --dtype float32 --state lean --seeds 1 \
    --dataset logistic --rows 12 --no-progress --out "$OUT/run-1e9-lean"
echo "run 1e9 lean: exit $?"
ls -R "$OUT"
