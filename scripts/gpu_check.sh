#!/usr/bin/env bash
# The GPU check, run on a GPU machine (one H200 here) in under 8 minutes.
#
# 1. On a CPU machine with network:  python scripts/gpu_prepare.py
#    (model, real and 1080p H.264/HEVC clips, CPU-path references into data/gpu; wheels into .whl)
# 2. On the GPU machine, from the repository root, with data/gpu and .whl beside the code:
#    OUT=/some/dir bash scripts/gpu_check.sh
#    It installs the carried wheels, runs the GPU tests (FAIL_WITHOUT_CUDA=1: no GPU is a failure),
#    then the GPU benchmark (streams sustained, NVDEC fps, inference fps, memory, latency), and
#    leaves 7 files in $OUT: environment.txt (with a probe of PyNvVideoCodec's objects),
#    gpu-tests.log, gpu-bench.log, gpu.json, gpu.md, gpu.png and dmon.txt (nvidia-smi dmon).
#    About 4 minutes; each step has its own time limit, under 7 minutes in all.
#
# REHEARSE=1 runs the same steps on a CPU machine (in the project's venv): the GPU tests are skipped
# instead of failing and the benchmark runs with --device cpu on one and two streams, so the script,
# the benchmark and its reports are checked end to end before device time is spent.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/benchmarks/results/gpu}
REHEARSE=${REHEARSE:-0}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 YOLO_OFFLINE=1 YOLO_AUTOINSTALL=false YOLO_CONFIG_DIR=/tmp/yolo
export SAFECITY_GPU_REF=${SAFECITY_GPU_REF:-$PWD/data/gpu}
PY=${PYTHON:-python3}

if [ ! -f "$SAFECITY_GPU_REF/reference.json" ]; then
  echo "no $SAFECITY_GPU_REF/reference.json: run scripts/gpu_prepare.py on a CPU machine first" >&2
  exit 2
fi
if [ "$REHEARSE" = 1 ]; then
  export FAIL_WITHOUT_CUDA=0 PYTHONPATH=$PWD
  BENCH_ARGS=(--device cpu --h264-streams 1,2 --hevc-streams 1,2 --seconds 6 --batch 4)
  { date -u; echo "REHEARSAL on $(nproc) CPU cores, no GPU"; $PY -c 'import torch; print("torch", torch.__version__)'; } \
    2>&1 | tee "$OUT/environment.txt"
else
  export FAIL_WITHOUT_CUDA=1
  BENCH_ARGS=(--seconds 10)
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "installing the carried wheels failed" >&2; exit 2; }
    export PYTHONPATH=/tmp/site:$PWD
  else
    export PYTHONPATH=$PWD
  fi
  { date -u; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; $PY -c \
    'import torch, PyNvVideoCodec as n; print("torch", torch.__version__, "cuda", torch.version.cuda); print("PyNvVideoCodec", getattr(n, "__version__", "?"))'; } \
    2>&1 | tee "$OUT/environment.txt"
  # what PyNvVideoCodec's objects offer, so a failing call below can be mended from this run's output
  timeout 60 $PY - "$SAFECITY_GPU_REF/bikes.mp4" >> "$OUT/environment.txt" 2>&1 <<'PROBE'
import sys, torch, PyNvVideoCodec as nvc
dmx = nvc.CreateDemuxer(filename=sys.argv[1])
print("demuxer:", [m for m in dir(dmx) if not m.startswith("_")])
dec = nvc.CreateDecoder(gpuid=0, codec=dmx.GetNvCodecId(), cudacontext=0, cudastream=0, usedevicememory=True)
frame = next(f for p in dmx for f in dec.Decode(p))
print("frame:", type(frame).__name__, [m for m in dir(frame) if not m.startswith("_")])
t = torch.from_dlpack(frame)
print("dlpack:", tuple(t.shape), t.dtype, t.device, "colorspace", dmx.ColorSpace(), "range", dmx.ColorRange())
PROBE
fi

# per-test limit where pytest-timeout is installed: a hung decoder fails its test, not the whole run
TEST_ARGS=(-q -p no:cacheprovider --tb=short -m needs_cuda)
$PY -c 'import pytest_timeout' 2>/dev/null && TEST_ARGS+=(--timeout 60)
DMON=
if [ "$REHEARSE" != 1 ] && command -v nvidia-smi >/dev/null; then
  nvidia-smi dmon -s u -d 2 -o T > "$OUT/dmon.txt" 2>&1 &  # GPU, memory, NVDEC, NVENC use every 2 s
  DMON=$!
fi

status=0
timeout 150 $PY -m pytest "${TEST_ARGS[@]}" tests/test_gpu.py 2>&1 | tee "$OUT/gpu-tests.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
timeout 240 $PY -m benchmarks.gpu --ref "$SAFECITY_GPU_REF" --out "$OUT" "${BENCH_ARGS[@]}" 2>&1 | tee "$OUT/gpu-bench.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
if [ -n "$DMON" ]; then
  kill "$DMON" 2>/dev/null
  nvidia-smi --query-gpu=utilization.gpu,utilization.decoder,memory.used --format=csv >> "$OUT/environment.txt" 2>&1
fi
exit $status
