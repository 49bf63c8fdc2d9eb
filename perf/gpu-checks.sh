#!/usr/bin/env bash
# Runs the GPU checks on a machine with an NVIDIA GPU: the whole test suite (its GPU tests included), then
# every `keel bench` target with its PyTorch baseline, and collects logs and results.
#
#   perf/gpu-checks.sh PUBLISH_DIR OUT_DIR [TARGET...]
#
# PUBLISH_DIR holds the framework-dependent publishes `Keel.Native.Tests/` and `Keel.Cli/`
# (dotnet publish tests/Keel.Native.Tests -c Release -o PUBLISH_DIR/Keel.Native.Tests, and likewise
# src/Keel.Cli); OUT_DIR receives tests.log, info.txt, bench-*.log and results/*.json|md. TARGETs default
# to every benchmark target. Run it from the repository root (the baselines are read from perf/baselines).
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 PUBLISH_DIR OUT_DIR [TARGET...]" >&2; exit 2; }
stage=$1; out=$2; shift 2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ceilings norm attention train)
mkdir -p "$out/results"
export KEEL_KERNEL_CACHE="${KEEL_KERNEL_CACHE:-$(mktemp -d)/kernels}"
keel() { dotnet "$stage/Keel.Cli/keel.dll" "$@"; }

start=$(date +%s)
keel info > "$out/info.txt" 2>&1
echo "== tests"
dotnet "$stage/Keel.Native.Tests/Keel.Native.Tests.dll" --no-progress > "$out/tests.log" 2>&1
tests_status=$?
grep -E "^\s+(total|failed|succeeded|skipped):" "$out/tests.log" | tr -s ' ' | paste -sd' '
grep -E "^failed " "$out/tests.log" | head -20

for target in "${targets[@]}"; do
  echo "== bench $target"
  keel bench "$target" --out "$out/results" > "$out/bench-$target.log" 2>&1
  tail -n 25 "$out/bench-$target.log"
done
echo "== done in $(( $(date +%s) - start )) s; tests exit code $tests_status"
exit $tests_status
