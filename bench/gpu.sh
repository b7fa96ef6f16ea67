#!/usr/bin/env bash
# The GPU figures and checks, as run on a lent GPU machine (device tool) in one call:
#   run(command="bash bench/gpu.sh", carry=[".device"], timeout_s=600)
# .device/site holds what that machine's Python lacks (spandrel, the Real-ESRGAN weights package
# and PyAV, copied from a venv here); .device/datasets/Set14/baboon.png is the timed photo.
# Order: the eager speed table and product path (ending in the uint8 result in host memory, the
# PNG encode timed apart); the video frame rate; the CUDA tests; last, the same at 1024 px with the
# compiled rows and --backend compiled (the longest: 590 s of bounds in all, under a call's 600). Each step is bounded, so a slow compilation still leaves the
# figures before it.
set -u
export PYTHONUNBUFFERED=1 REMASTER_DATASETS="$PWD/.device/datasets" REMASTER_WEIGHTS_FOLDER=/tmp/weights
export PYTHONPATH="$PWD/.device/site:$PWD"
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())"
  lscpu | grep -E "Model name|^CPU\(s\)"; } 2>&1 | tee "$OUT/gpu.txt"
timeout 150 python3 bench/speed.py --sizes 256,512,1024 --rounds 2 --device cuda --models realesrgan-x4plus \
  --default-path 256,1024 2>&1 | grep -v Warning | tee "$OUT/speed_gpu.md"
timeout 120 python3 bench/video.py --device cuda --frames 48 --rounds 2 2>&1 | grep -v Warning \
  | tee "$OUT/video_gpu.md"
timeout 90 python3 -m pytest -q -p no:cacheprovider -k "cuda and not compiled" tests/test_speed.py \
  tests/test_tiling.py tests/test_uint8_result.py 2>&1 | tail -8 | tee "$OUT/tests.log"
timeout 230 python3 bench/speed.py --sizes 1024 --rounds 2 --device cuda --models realesrgan-x4plus --compiled \
  --default-path 256,1024 2>&1 | grep -v Warning | tee "$OUT/speed_gpu_compiled.md"
echo finished
