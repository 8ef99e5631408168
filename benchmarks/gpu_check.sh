#!/usr/bin/env bash
# The GPU checks of the host pipeline (issue 17), in one command on a lent device machine (H100/H200, 16 cores):
#   1. tests/test_cuda.py: the CUDA path against the CPU (float32 and the bf16 defaults, staging, GPU memory);
#   2. the writer alone by encoder threads (benchmarks/writer_encoders.py, 256 MP from memory);
#   3. the old and the new code on the same inputs, taking turns (benchmarks/ab.py) at 64, 256 and 1000 MP:
#      `tiled`, urst bench's row (wall time, peak GPU memory, ÷ model alone, stage split; note that the old
#      bench synchronised the device at every stage boundary, which slows its own job down), and `cli`, the
#      wall time of `urst stylize` itself (the fair before/after); the new code's host-only ceiling (`host`,
#      = urst bench --baseline-host) and libvips' copy of each input (`copy`, = --baseline-copy), once.
# At most ~10 minutes (each step has its timeout; ab.json keeps what finished), plus the machine's start.
# Goals: 1 GP <= 8 s, ÷ model alone <= 1.5 from 256 MP, peak GPU memory <= 2 GiB.
#
# Prepare here, in the repository's root (no GPU needed):
#     bash benchmarks/gpu_check.sh prepare OLD_COMMIT      # e.g. the commit before issue 17
# It puts the old code in .gpu-old/ and the wheels the device machine lacks (pyvips, its libvips, isal) in .whl/
# (both ignored by git). Then call the device tool's run with
#     command "bash benchmarks/gpu_check.sh", carry [".whl", ".gpu-old"], timeout_s 600
# The table is at the end of the output; every run is in $OUT/ab.json, the logs in $OUT.
#
# A dry run of the same steps here, on the CPU at small sizes with this checkout's .venv (after prepare), checks
# that the script still runs against the current CLI before device time is spent on it:
#     DRY=1 bash benchmarks/gpu_check.sh
set -o pipefail
cd "$(dirname "$0")/.."

if [ "$1" = prepare ]; then
    old=${2:?usage: gpu_check.sh prepare OLD_COMMIT}
    rm -rf .gpu-old .whl && mkdir -p .gpu-old .whl || exit 1
    git archive "$old" urst_cli weights | tar -x -C .gpu-old || exit 1
    pip="${PYTHON:-.venv/bin/python} -m pip --disable-pip-version-check -q"
    $pip wheel --no-deps -w .whl "pyvips==3.2.0" || exit 1   # pure Python; PyPI has it as source only
    $pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "pyvips-binary==8.18.7" "cffi==2.1.1" "pycparser==3.12" "isal==1.9.1" || exit 1
    du -sh .gpu-old .whl
    exit 0
fi

if [ -n "$DRY" ]; then
    OUT=${OUT:-/tmp/urst-gpu-check-dry} device=cpu sizes=0.5,2 writer_mp=4 encoders=1,2
    python=$(pwd)/.venv/bin/python
else
    OUT=${OUT:-/tmp/urst-gpu-check} device=cuda sizes=64,256,1000 writer_mp=256 encoders=1,2,4,8,16
    python=python3
    $python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    lscpu | grep -E "^Model name|^CPU\(s\)"
    $python -c "import torch, pyvips; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(),
                                             'libvips', pyvips.version(0), pyvips.version(1))"
} 2>&1 | tee "$OUT/machine.txt"

timeout 150 $python -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$OUT/test_cuda.log"

timeout 45 $python benchmarks/writer_encoders.py --megapixels $writer_mp --encoders $encoders 2>&1 \
    | tee "$OUT/writer.log"

# single-scale (--stroke-scale 1, ab.py's default): the old tree predates multi-scale stylization
timeout 370 $python benchmarks/ab.py --base .gpu-old --device $device --sizes $sizes --modes tiled,cli,host \
    --once copy --rounds 1 --json "$OUT/ab.json" 2>&1 | tee "$OUT/ab.log"
