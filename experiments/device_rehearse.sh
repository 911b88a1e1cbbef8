#!/usr/bin/env bash
# The device check's rehearsal, here, on a CPU: experiments/device_check.sh --rehearse in a
# Python 3.12 venv that holds what the device image holds (jax and jaxlib 0.11.2, numpy 2.5.2,
# jaxtyping 0.3.11 as read there; equinox, optax, chex, matplotlib, tqdm, scipy, pytest at
# PyPI's newest, their versions there being unknown; no currencyconverter, no memoa-jax),
# with the carried wheels made first (device_check.sh --make-wheels) and installed by the
# check itself with `pip install --no-index`.
#
#     bash experiments/device_rehearse.sh        # OUT=runs/device-rehearsal-<time> by default
#
# VENV (default /tmp/memoa-device-venv) is made once and reused; PY312 names the interpreter
# (default: pyenv's 3.12, else python3.12). The parts' time limits are the device's times
# LIMIT_SCALE, 10 by default: on this 2-core VM, shared with other work, XLA compiles the same
# programs many times slower than a quiet machine (measured under a load of 10: the lean
# loop of all five methods at N = 10^3 compiled in 450 s, the stored one in 47 s;
# figures/bench_kernels_lean records 51 s for the lean one), and a rehearsal checks that every
# part runs, not how long it takes on the device. The rehearsal of 2026-12-06 passed in 37 min
# under that load; that of 2026-12-07 (five parts) in 6 min under a load of about 4.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
VENV=${VENV:-/tmp/memoa-device-venv}
if [ ! -x "$VENV/bin/python3" ]; then
    py=${PY312:-$(ls "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12.*/bin/python3.12 2>/dev/null |
        head -1)}
    py=${py:-$(command -v python3.12)} || { echo "no Python 3.12 found" >&2; exit 2; }
    "$py" -m venv "$VENV" || exit 1
    "$VENV/bin/python3" -m pip install -q jax==0.11.2 jaxlib==0.11.2 numpy==2.5.2 \
        jaxtyping==0.3.11 equinox optax chex matplotlib tqdm scipy pytest || {
        rm -rf "$VENV"
        exit 1
    }
fi
"$VENV/bin/python3" -m pip list 2>/dev/null | grep -iE '^(jax|jaxlib|numpy|equinox|optax) '
[ -d wheels ] || PYTHON=python3 bash experiments/device_check.sh --make-wheels || exit 1
OUT=${OUT:-runs/device-rehearsal-$(date -u +%Y%m%d-%H%M%S)} LIMIT_SCALE=${LIMIT_SCALE:-10} \
    PATH="$VENV/bin:$PATH" PYTHON="$VENV/bin/python3" bash experiments/device_check.sh --rehearse
