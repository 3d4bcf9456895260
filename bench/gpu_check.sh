#!/usr/bin/env bash
# The GPU checks, as one script for a GPU machine without network (see BENCHMARKS.md):
# CUDA tests, a real `hpo worker --device cuda`, then the benchmarks on CUDA, each step under
# its own time limit so one slow step cannot eat the others. Results go to $OUT (or ./gpu-out).
#
# STEPS picks the steps; the default set is what is still unmeasured and fits in about 8 minutes
# (worker, workers and fp32 eager epochs were measured on 2026-11-27, bench/results/).
# DEVICE=cpu IMAGES=128 BATCHES=64 runs the same steps small on a CPU: tests/bench checks the
# script that way, since a GPU run is short and rare and must not be lost to a broken step.
set -u
out=${OUT:-gpu-out}
device=${DEVICE:-cuda}
images=${IMAGES:-50000}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
steps=${STEPS:-tests data_pipeline profile epoch compile workers_mps}
fast=bf16,channels_last,cudnn_benchmark,cuda_graph
step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  case " $steps " in *" $name "*) ;; *) return 0 ;; esac
  echo "=== $name (limit ${limit}s)"
  local started=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
  echo "=== $name: exit ${PIPESTATUS[0]} after $((SECONDS - started)) s"
}

if command -v nvidia-smi >/dev/null; then nvidia-smi -L | tee "$out/device.txt"; fi
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/device.txt"

step tests 100 python3 -m pytest -q -n 0 -m cuda tests/model/test_cuda.py -p no:cacheprovider
step worker 50 bash -c "
  db=\$(mktemp -d)/gpu.db
  python3 -m hpo create --storage sqlite:///\$db --study gpu --sampler tpe --n-trials 3 \
    --dataset synthetic --subset $((images * 2 / 5)) --epochs 5 --patience 2 &&
  python3 -m hpo worker --storage sqlite:///\$db --study gpu --device $device --sampler-seed 0 &&
  python3 -m hpo export --storage sqlite:///\$db --study gpu"
step data_pipeline 45 python3 -m bench.data_pipeline --device "$device" --images "$images"
step profile 60 bash -c "
  python3 -m bench.epoch_profile --device $device --images $images --speed auto &&
  python3 -m bench.epoch_profile --device $device --images $images --speed $fast"
step epoch 130 python3 -m bench.epoch --device "$device" --images "$images" --batches "${BATCHES:-128,512}" \
  --variants "${EPOCH_VARIANTS:-cudnn_benchmark,cuda_graph;channels_last,cudnn_benchmark,cuda_graph;$fast}"
step workers 110 python3 -m bench.workers_per_gpu --device "$device" --images "$images" \
  --workers "${WORKERS:-1,2,4,8}" --seconds 12
step compile 80 python3 -m bench.epoch --device "$device" --images "$images" --batches 128 \
  --variants "cudnn_benchmark,cuda_graph;cudnn_benchmark,cuda_graph,compile"
if [[ " $steps " != *" workers_mps "* ]]; then
  :
elif command -v nvidia-cuda-mps-control >/dev/null && nvidia-cuda-mps-control -d; then
  step workers_mps 80 bash -c "
    python3 -m bench.workers_per_gpu --device $device --images $images --workers 8 --seconds 12 \
      --label '(CUDA MPS on)' &&
    python3 -m bench.workers_per_gpu --device $device --images $images --workers 8 --seconds 12 \
      --speed $fast --label '(CUDA MPS on, bf16)'"
  echo quit | nvidia-cuda-mps-control
else
  echo "CUDA MPS: not available on this machine" | tee "$out/workers_mps.txt"
fi
