#!/usr/bin/env python3
"""PyTorch baseline for `keel bench norm`: the fused residual norm of Keel's general sub-layer.

The same function as kernels/residual_norm.cu with RMSNorm out and in (alpha = L = 1024, eps = 1e-5):

    s = alpha * x + f        x fp32 [rows, hidden] (the residual stream), f bf16 (the branch output)
    y = rms_norm(s) * g_out  fp32, the next residual stream
    z = rms_norm(y) * g_in   rounded to bf16, the next GEMM's operand

timed as PyTorch eager and as torch.compile of that function, forward and backward (autograd, from
gradients dy fp32 and dz bf16 into x, f, g_out and g_in), with CUDA events: warm-up, then the median of
many runs, rotating through enough input sets that consecutive runs miss the L2 cache. Forward runs with
autograd recording (inputs require grad), as in training; backward runs `torch.autograd.grad` with
retain_graph on a graph recorded beforehand, so it measures the backward alone.

Writes a JSON list of {"case", "pass", "impl", "microseconds"} (plus "method" for backward) to --json;
`keel bench norm` runs it in the same job and matches the cases ("ROWSxHIDDEN", "forward"/"backward").

    python3 perf/baselines/residual_norm.py --json out.json [--shape 16384x1024 ...] [--repeats 50] [--warmup 10]
"""

import argparse
import json
import statistics
import sys

import torch

DEFAULT_SHAPES = ["16384x1024", "8192x4096"]  # the same defaults as `keel bench norm`
ALPHA = 1024.0
EPS = 1e-5


def rms_norm(v, gain):
    if hasattr(torch.nn.functional, "rms_norm"):  # torch >= 2.4
        return torch.nn.functional.rms_norm(v, (v.shape[-1],), gain, EPS)
    return v * torch.rsqrt(v.pow(2).mean(-1, keepdim=True) + EPS) * gain


def keel_residual_norm(x, f, gain_out, gain_in):
    s = ALPHA * x + f.float()
    y = rms_norm(s, gain_out)
    z = rms_norm(y, gain_in).to(torch.bfloat16)
    return y, z


def parse_shape(text):
    parts = text.split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise SystemExit(f"residual_norm.py: shape '{text}' is not ROWSxHIDDEN (for example 16384x1024)")
    return int(parts[0]), int(parts[1])


def rotation_sets(bytes_per_set):
    """Input sets so that a rotation misses L2, as the keel bench context picks them (2 to 16)."""
    properties = torch.cuda.get_device_properties(0)
    l2 = getattr(properties, "L2_cache_size", 50 << 20)
    return max(2, min(16, 4 * l2 // max(1, bytes_per_set) + 1))


def median_microseconds(work, warmup, repeats):
    for i in range(warmup):
        work(i)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for i in range(repeats):
        start.record()
        work(warmup + i)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0)
    return statistics.median(times)


def make_set(rows, hidden, device, seed):
    generator = torch.Generator(device=device).manual_seed(seed)

    def randn(dtype, requires_grad=False):
        return torch.randn(rows, hidden, device=device, generator=generator).to(dtype).requires_grad_(requires_grad)

    return {
        "x": randn(torch.float32, True),
        "f": randn(torch.bfloat16, True),
        "dy": randn(torch.float32),
        "dz": randn(torch.bfloat16),
    }


def measure(impl, fn, rows, hidden, args, device):
    gain_out = (1 + 0.1 * torch.randn(hidden, device=device)).requires_grad_(True)
    gain_in = (1 + 0.1 * torch.randn(hidden, device=device)).requires_grad_(True)
    # x, f, y, z, dy, dz, dx, df: 24 bytes per element, as keel bench counts a set.
    sets = [make_set(rows, hidden, device, 10 * (i + 1)) for i in range(rotation_sets(24 * rows * hidden))]
    inputs = lambda s: (s["x"], s["f"], gain_out, gain_in)

    forward = median_microseconds(lambda i: fn(*inputs(sets[i % len(sets)])), args.warmup, args.repeats)

    # Backward alone: record each set's graph once, then replay the backward with retain_graph.
    graphs = [fn(*inputs(s)) for s in sets]
    method = "retain_graph"

    def backward(i):
        s = sets[i % len(sets)]
        y, z = graphs[i % len(sets)]
        torch.autograd.grad((y, z), inputs(s), (s["dy"], s["dz"]), retain_graph=True)

    try:
        backward_time = median_microseconds(backward, args.warmup, args.repeats)
    except RuntimeError as error:
        # Should a compiled graph refuse retain_graph: time forward + backward and subtract the forward.
        print(f"residual_norm.py: {impl} backward with retain_graph failed ({error}); timing forward+backward instead",
              file=sys.stderr)
        method = "forward_backward_minus_forward"

        def both(i):
            s = sets[i % len(sets)]
            torch.autograd.grad(fn(*inputs(s)), inputs(s), (s["dy"], s["dz"]))

        backward_time = median_microseconds(both, args.warmup, args.repeats) - forward
    del graphs, sets
    torch.cuda.empty_cache()
    return forward, backward_time, method


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the results")
    parser.add_argument("--shape", action="append", default=[], help="ROWSxHIDDEN; repeatable (default: %s)" % " ".join(DEFAULT_SHAPES))
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--impl", action="append", choices=["eager", "compile"], default=[], help="default: both")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("residual_norm.py: no CUDA device for torch")
    device = torch.device("cuda")
    shapes = [parse_shape(s) for s in (args.shape or DEFAULT_SHAPES)]
    impls = args.impl or ["eager", "compile"]

    results = []
    for rows, hidden in shapes:
        for impl in impls:
            # A fresh compile per shape, without dynamic shapes: each case gets its specialized kernels.
            fn = keel_residual_norm if impl == "eager" else torch.compile(keel_residual_norm, dynamic=False)
            forward, backward, method = measure(impl, fn, rows, hidden, args, device)
            case = f"{rows}x{hidden}"
            results.append({"case": case, "pass": "forward", "impl": impl, "microseconds": forward})
            results.append({"case": case, "pass": "backward", "impl": impl, "microseconds": backward, "method": method})
            print(f"{case} {impl}: forward {forward:.1f} us, backward {backward:.1f} us ({method})", file=sys.stderr)
            if impl == "compile":
                torch._dynamo.reset()

    with open(args.json, "w") as out:
        json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
