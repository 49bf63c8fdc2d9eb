#!/usr/bin/env python3
"""PyTorch baseline for `keel bench attention`: scaled_dot_product_attention on its flash and cuDNN back ends.

Same cases as the Keel suite (src/Keel.Cli/Commands/Bench/AttentionSuite.cs): batch x sequence = 16k tokens,
hidden 2048 (32 heads of 64 or 16 of 128), two query heads per kv head, causal and not, sequences 512..16k; or the
cases given with --shape, written as Keel writes them (b32-s512-h16-kv8-d128-causal; b, h and kv may be left out).
Tensors are laid out [B, S, H, D] as Keel's are and handed to SDPA as [B, H, S, D] views.

Forward and backward are timed separately with CUDA events (median of --repeats runs after --warmup), the backward
as torch.autograd.grad of a retained graph. Grouped-query heads go through enable_gqa=True where the back end takes
it; otherwise k and v are expanded to every query head before timing (the entry then says "kv expanded").

Writes a JSON list of {"case", "pass", "impl", "microseconds", "tflops"[, "note"]} to --json; FLOPs as FlashAttention
counts them (forward 4 S^2 D Hq B, halved when causal; backward 2.5x forward). Exits 1 without torch or a GPU.
"""
import argparse
import json
import statistics
import sys

TOKENS, HIDDEN = 16384, 2048


def parse_case(text):
    fields = {}
    for part in text.split("-"):
        if part in ("causal", "full"):
            fields["causal"] = part == "causal"
        elif part.startswith("kv"):
            fields["kv"] = int(part[2:])
        elif part[:1] in ("b", "s", "h", "d"):
            fields[part[0]] = int(part[1:])
        else:
            raise ValueError(f"attention case '{text}' is not of the form [b32-]s512[-h16][-kv8]-d128-causal|full")
    seq, dim = fields["s"], fields["d"]
    heads = fields.get("h", HIDDEN // dim)
    return {
        "batch": fields.get("b", max(1, TOKENS // seq)),
        "seq": seq,
        "heads": heads,
        "kv_heads": fields.get("kv", max(1, heads // 2)),
        "dim": dim,
        "causal": fields["causal"],
    }


def case_name(c):
    return f"b{c['batch']}-s{c['seq']}-h{c['heads']}-kv{c['kv_heads']}-d{c['dim']}-{'causal' if c['causal'] else 'full'}"


def default_cases():
    return [f"s{s}-d{d}-{m}" for d in (64, 128) for m in ("causal", "full") for s in (512, 1024, 2048, 4096, 8192, 16384)]


def median_microseconds(torch, work, warmup, repeats):
    for _ in range(warmup):
        work()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        work()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) * 1000.0)
    return statistics.median(times)


def measure(torch, sdpa, backend, c, warmup, repeats):
    """Forward and backward microseconds of one case on one back end, and a note (or raises if unsupported)."""
    from torch.nn.attention import sdpa_kernel

    b, s, h, kv, d = c["batch"], c["seq"], c["heads"], c["kv_heads"], c["dim"]
    g = torch.Generator(device="cuda").manual_seed(1)
    # [B, S, H, D] storage, as Keel lays it out, viewed as [B, H, S, D].
    q = torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2).requires_grad_()
    k = torch.randn(b, s, kv, d, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2).requires_grad_()
    v = torch.randn(b, s, kv, d, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2).requires_grad_()
    grad = 0.01 * torch.randn(b, s, h, d, device="cuda", dtype=torch.bfloat16, generator=g).transpose(1, 2)
    note = None
    with sdpa_kernel(backend):
        try:
            run = lambda: sdpa(q, k, v, is_causal=c["causal"], enable_gqa=kv != h)
            out = run()
        except (RuntimeError, TypeError):
            if kv == h:
                raise
            k = k.detach().repeat_interleave(h // kv, dim=1).requires_grad_()
            v = v.detach().repeat_interleave(h // kv, dim=1).requires_grad_()
            run = lambda: sdpa(q, k, v, is_causal=c["causal"])
            out = run()
            note = "kv expanded"
        with torch.no_grad():
            forward = median_microseconds(torch, run, warmup, repeats)
        backward = median_microseconds(
            torch, lambda: torch.autograd.grad(out, (q, k, v), grad, retain_graph=True), warmup, repeats)
    return forward, backward, note


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", required=True, help="output file")
    parser.add_argument("--shape", action="append", default=[], help="a case, as keel bench attention names it")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend
    except ImportError as e:
        print(f"attention.py: PyTorch with torch.nn.attention is needed ({e})", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("attention.py: no CUDA device", file=sys.stderr)
        return 1

    backends = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}
    entries = []
    for text in args.shape or default_cases():
        c = parse_case(text)
        name = case_name(c)
        flops = 4.0 * c["seq"] ** 2 * c["dim"] * c["heads"] * c["batch"] / (2 if c["causal"] else 1)
        for impl, backend in backends.items():
            try:
                forward, backward, note = measure(torch, F.scaled_dot_product_attention, backend, c, args.warmup, args.repeats)
            except (RuntimeError, TypeError) as e:
                print(f"attention.py: {name} on {impl}: unsupported ({str(e).splitlines()[0]})", file=sys.stderr)
                continue
            finally:
                torch.cuda.empty_cache()
            for pass_name, microseconds, pass_flops in (("forward", forward, flops), ("backward", backward, 2.5 * flops)):
                entry = {"case": name, "pass": pass_name, "impl": impl, "microseconds": microseconds,
                         "tflops": pass_flops / (microseconds * 1e-6) / 1e12}
                if note:
                    entry["note"] = note
                entries.append(entry)
            print(f"{name} {impl}: forward {forward:.0f} us, backward {backward:.0f} us{' (' + note + ')' if note else ''}",
                  file=sys.stderr)
    with open(args.json, "w") as f:
        json.dump(entries, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
