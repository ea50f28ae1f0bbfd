#!/usr/bin/env bash
# The population's GPU checks and timings in one foreground command (about 8 minutes on one
# H200), each part under its own time limit, results written as each part ends:
#
#   timeout 590 bash benchmarks/gpu_check.sh data/cifar10-jpeg.tar.gz "$OUT"
#   timeout 300 bash benchmarks/gpu_check.sh data/cifar10-jpeg.tar.gz "$OUT" layouts
#
# The second form times the paths with bf16 off and with channels_last on (per step, FastNet
# and ResNet18), to set those defaults; the first does the rest:
#
# 1. the gpu-marked tests of tests/test_population.py (captured step equals eager; no host
#    synchronisation in the step), if pytest is installed;
# 2. bench_paths.py: eager batched, looped, captured, and batched with vmap's BatchNorm, per
#    step, for the digits CNN, FastNet and ResNet18 (and the captured state's difference from
#    the eager one after the same steps);
# 3. bench_generation.py on the CIFAR-10 tarball: one generation (a) on both paths and
#    captured, (b) released-style, (c) one SGD epoch, with the bf16 peak and the targets.
set -u
tar=${1:?usage: gpu_check.sh CIFAR10_TARBALL OUT_DIR}
out=${2:?usage: gpu_check.sh CIFAR10_TARBALL OUT_DIR}
py=${PYTHON:-python3}
mkdir -p "$out"
tar=$(realpath "$tar"); out=$(realpath "$out")
cd "$(dirname "$0")/.."
nvidia-smi > "$out/nvidia-smi.txt" 2>&1
if [ "${3:-}" = layouts ]; then
  for flags in "--amp off" "--channels-last" "--amp off --channels-last"; do
    name=$(echo "$flags" | tr -d ' -')
    # shellcheck disable=SC2086  # the flags are meant to split
    timeout 90 "$py" benchmarks/bench_paths.py --models fastnet,resnet18 --capture $flags \
      --json "$out/paths_$name.json" 2>&1 | tee "$out/paths_$name.txt"
  done
  exit 0
fi
if "$py" -c "import pytest" 2>/dev/null; then
  timeout 120 "$py" -m pytest tests/test_population.py -q -m gpu -rs -p no:cacheprovider \
    > "$out/gpu_tests.txt" 2>&1
  echo "gpu tests: exit $? (log in gpu_tests.txt)"; tail -3 "$out/gpu_tests.txt"
else
  echo "pytest not installed: gpu tests skipped (bench_paths checks the captured state)"
fi
timeout 150 "$py" benchmarks/bench_paths.py --models cnn,fastnet,resnet18 --capture \
  --vmap-batchnorm --json "$out/paths.json" 2>&1 | tee "$out/paths.txt"
timeout 290 "$py" benchmarks/bench_generation.py --cifar "$tar" --capture \
  --json "$out/gen.json" 2>&1 | tee "$out/gen.txt"
