#!/usr/bin/env bash
# The memory planner's GPU checks, on a machine with an NVIDIA GPU:
#   1. keel plan for the paper's deepest model (1024 sub-layers, hidden 1024, 16/8 heads, FFN 3072, sequence 4096)
#      against this GPU's memory;
#   2. the widest 1024-sub-layer model (head dim 64, FFN 3 x hidden, sequence 4096, batch 1) that auto fits on
#      this GPU, trained for bench steps with CUDA graphs and without: step time, host issue time (launch overhead),
#      the plan's peak and the device memory in use as the driver reports it;
#   3. recompute overhead: every:1 against store on the widest such model that fits with store.
#
#   perf/memory-checks.sh PUBLISH_DIR OUT_DIR
#
# PUBLISH_DIR holds the framework-dependent publish Keel.Cli/ (dotnet publish src/Keel.Cli -c Release -o
# PUBLISH_DIR/Keel.Cli); OUT_DIR receives plan-*.txt, bench-*.log and results/*.json|md. Each bench line of the
# train target ends with "device memory in use ... (N% of the plan); host issue ... µs per step (M% of the step ...)".
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 PUBLISH_DIR OUT_DIR" >&2; exit 2; }
stage=$1; out=$2
mkdir -p "$out/results"
export KEEL_KERNEL_CACHE="${KEEL_KERNEL_CACHE:-$(mktemp -d)/kernels}"
keel() { dotnet "$stage/Keel.Cli/keel.dll" "$@"; }
model() { echo "--layers 1024 --hidden $1 --heads $(( $1 / 64 )) --kv-heads $(( $1 / 128 )) --ffn $(( 3 * $1 )) --seq 4096 --batch 1 --tokenizer gpt2"; }
shape() { echo "L=1024,h=$1,heads=$(( $1 / 64 )),kv=$(( $1 / 128 )),ffn=$(( 3 * $1 )),seq=4096,batch=1,vocab=50257,memory=$2,graphs=$3"; }

echo "== plan: the paper's model on this GPU"
keel plan $(model 1024) | tee "$out/plan-paper.txt" | tail -n 4

widest=""; widest_store=""
for h in 1024 896 768 640 512 384 256; do
  keel plan $(model "$h") > "$out/plan-h$h.txt" 2>&1
  if [ -z "$widest" ] && grep -q "^auto: [a-z]" "$out/plan-h$h.txt" && ! grep -q "^auto: No memory" "$out/plan-h$h.txt"; then widest=$h; fi
  if [ -z "$widest_store" ] && grep -qE "^store .* yes$" "$out/plan-h$h.txt"; then widest_store=$h; fi
done
echo "widest 1024-sub-layer model auto fits: hidden ${widest:-none}; widest that fits keeping everything: hidden ${widest_store:-none}"

if [ -n "$widest" ]; then
  echo "== bench: hidden $widest under auto, graphs on and off"
  keel bench train --repeats 10 --warmup 3 --out "$out/results" --no-baseline \
    --shape "$(shape "$widest" auto on);$(shape "$widest" auto off)" > "$out/bench-auto.log" 2>&1
  tail -n 12 "$out/bench-auto.log"
fi
if [ -n "$widest_store" ]; then
  echo "== bench: hidden $widest_store, store against every:1"
  keel bench train --repeats 10 --warmup 3 --out "$out/results" --no-baseline \
    --shape "$(shape "$widest_store" store on);$(shape "$widest_store" every:1 on)" > "$out/bench-recompute.log" 2>&1
  tail -n 12 "$out/bench-recompute.log"
fi
