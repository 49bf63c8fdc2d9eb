#!/usr/bin/env python3
"""The Keel Transformer of Keel.Native in PyTorch eager: the baseline `keel bench train` runs beside the
.NET training step, on the same GPU, in the same job.

The model follows docs/model.md exactly as src/Keel.Native/Model does:
  x_{l+1} = N_out(alpha * x_l + F_l(N_in(x_l))),  alpha = L (the number of sub-layers), fixed
  first attention sub-layer: x1 = x0 + Attn(N(x0)); first FFN: alpha 1 with its outer norm;
  the last sub-layer's normalized output feeds the (tied) LM head.
Baselines: Pre-LN x + F(N(x)) with a final norm; Post-LN N(x + F(x)); DeepNorm N(a x + F(x)), a = L^(1/4),
FFN/V/O init scaled by (4L)^(-1/4). Causal grouped-query attention, RoPE theta 10000 (rotate half),
SwiGLU (or GELU tanh), RMSNorm eps 1e-5 (or LayerNorm), init N(0, 0.02^2), gains 1.
Numerics as on the GPU device: fp32 master weights and residual stream (alpha * x + f in fp32, norms in fp32),
bf16 GEMM operands through autocast, fused AdamW (0.9, 0.95), weight decay 0.01 on matrices only,
global-norm clipping at 1.0, the loss read back every step (as the .NET trainer does for its NaN guard).

A case is key=value pairs separated by commas, as `keel bench train --shape` takes them:
  L=24,h=1024,heads=16,kv=8,ffn=3072,seq=1024,batch=8,vocab=50257[,arch=keel][,ffn_kind=swiglu][,norm=rms]
  [,memory=POLICY][,graphs=on|off]
memory and graphs choose how Keel.Native runs the step; they are accepted and ignored here (eager PyTorch keeps
every activation and launches every op), so that the same cases run on both sides.

Usage:
  python3 perf/baselines/keel_model.py --json out.json [--shape CASE]... [--repeats 50] [--warmup 10]
Writes a JSON list of {"case", "pass": "step", "impl": "eager", "microseconds", "tokens_per_s"} and prints a
line per case.
"""
import argparse
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F

DEFAULT_CASES = [
    "L=24,h=1024,heads=16,kv=8,ffn=3072,seq=1024,batch=8,vocab=50257",
    "L=96,h=1024,heads=16,kv=8,ffn=3072,seq=1024,batch=4,vocab=50257",
]


def parse_case(text):
    cfg = dict(L=24, h=1024, heads=16, kv=8, ffn=3072, seq=1024, batch=8, vocab=50257,
               arch="keel", ffn_kind="swiglu", norm="rms", memory="store", graphs="on")
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = pair.partition("=")
        key = key.strip()
        if key not in cfg:
            raise SystemExit(f"unknown key {key!r} in case {text!r}")
        textual = ("arch", "ffn_kind", "norm", "memory", "graphs")
        cfg[key] = value.strip().lower() if key in textual else int(value)
    if cfg["h"] % cfg["heads"] or cfg["heads"] % cfg["kv"] or cfg["L"] % 2 or (cfg["h"] // cfg["heads"]) % 2:
        raise SystemExit(f"case {text!r} cannot work (hidden/heads, heads/kv, even L, even head dim)")
    return cfg


class Norm(torch.nn.Module):
    """RMSNorm (gain) or LayerNorm (gain and bias), computed in fp32, eps 1e-5."""

    def __init__(self, hidden, kind):
        super().__init__()
        self.kind = kind
        self.weight = torch.nn.Parameter(torch.ones(hidden))
        self.bias = torch.nn.Parameter(torch.zeros(hidden)) if kind == "layer" else None

    def forward(self, x):
        x = x.float()
        if self.kind == "layer":
            return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, 1e-5)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


def rope(x, cos, sin):
    """Rotate-half RoPE on [batch, heads, seq, dim]."""
    half = x.shape[-1] // 2
    a, b = x[..., :half], x[..., half:]
    return torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)


class Attention(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        h, d = c["h"], c["h"] // c["heads"]
        self.heads, self.kv, self.d = c["heads"], c["kv"], d
        self.q_proj = torch.nn.Linear(h, c["heads"] * d, bias=False)
        self.k_proj = torch.nn.Linear(h, c["kv"] * d, bias=False)
        self.v_proj = torch.nn.Linear(h, c["kv"] * d, bias=False)
        self.o_proj = torch.nn.Linear(c["heads"] * d, h, bias=False)

    def forward(self, z, cos, sin):
        b, s, _ = z.shape
        q = self.q_proj(z).view(b, s, self.heads, self.d).transpose(1, 2)
        k = self.k_proj(z).view(b, s, self.kv, self.d).transpose(1, 2)
        v = self.v_proj(z).view(b, s, self.kv, self.d).transpose(1, 2)
        q, k = rope(q, cos, sin).to(v.dtype), rope(k, cos, sin).to(v.dtype)
        group = self.heads // self.kv
        if group > 1:
            k = k.repeat_interleave(group, dim=1)
            v = v.repeat_interleave(group, dim=1)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(o.transpose(1, 2).reshape(b, s, self.heads * self.d))


class FeedForward(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.swiglu = c["ffn_kind"] == "swiglu"
        if self.swiglu:
            self.gate_proj = torch.nn.Linear(c["h"], c["ffn"], bias=False)
        self.up_proj = torch.nn.Linear(c["h"], c["ffn"], bias=False)
        self.down_proj = torch.nn.Linear(c["ffn"], c["h"], bias=False)

    def forward(self, z, cos=None, sin=None):
        if self.swiglu:
            return self.down_proj(F.silu(self.gate_proj(z)) * self.up_proj(z))
        return self.down_proj(F.gelu(self.up_proj(z), approximate="tanh"))


class KeelModel(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        L, arch, h = c["L"], c["arch"], c["h"]
        self.embed_tokens = torch.nn.Embedding(c["vocab"], h)
        self.branches = torch.nn.ModuleList(Attention(c) if l % 2 == 0 else FeedForward(c) for l in range(L))
        has_in = arch in ("keel", "preln")
        self.in_norms = torch.nn.ModuleList(Norm(h, c["norm"]) if has_in else torch.nn.Identity() for _ in range(L))
        self.out_norms = torch.nn.ModuleList(
            Norm(h, c["norm"]) if self.has_out_norm(l) else torch.nn.Identity() for l in range(L))
        self.final_norm = Norm(h, c["norm"]) if arch == "preln" else torch.nn.Identity()
        self.alphas = [self.alpha(l) for l in range(L)]
        d = h // c["heads"]
        inv = 10000.0 ** (-torch.arange(0, d // 2, dtype=torch.float64) * 2 / d)
        angles = torch.arange(c["seq"], dtype=torch.float64)[:, None] * inv[None, :]
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)
        self.reset_parameters()

    def has_out_norm(self, l):
        arch = self.c["arch"]
        return l > 0 if arch == "keel" else arch in ("postln", "deepnorm")

    def alpha(self, l):
        L, arch = self.c["L"], self.c["arch"]
        if arch == "keel":
            return 1.0 if l < 2 else float(L)
        if arch == "deepnorm":
            return float(L) ** 0.25
        return 1.0

    def reset_parameters(self):
        scaled = (4.0 * self.c["L"]) ** -0.25 if self.c["arch"] == "deepnorm" else 1.0
        for name, p in self.named_parameters():
            if p.dim() == 2:
                deep = any(k in name for k in ("v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
                torch.nn.init.normal_(p, 0.0, 0.02 * (scaled if deep else 1.0))

    def forward(self, tokens, targets):
        x = self.embed_tokens(tokens).float()
        for l, branch in enumerate(self.branches):
            f = branch(self.in_norms[l](x), self.cos, self.sin)
            x = self.out_norms[l](self.alphas[l] * x + f.float())
        x = self.final_norm(x)
        logits = F.linear(x, self.embed_tokens.weight).float()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def bench_case(text, repeats, warmup, device):
    c = parse_case(text)
    torch.manual_seed(1)
    model = KeelModel(c).to(device)
    decayed = [p for p in model.parameters() if p.dim() == 2]
    others = [p for p in model.parameters() if p.dim() != 2]
    optimizer = torch.optim.AdamW([{"params": decayed, "weight_decay": 0.01}, {"params": others, "weight_decay": 0.0}],
                                  lr=3e-4, betas=(0.9, 0.95), eps=1e-8, fused=device == "cuda")
    tokens = torch.randint(0, 256, (c["batch"], c["seq"] + 1), device=device)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(inputs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        return loss.item()

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) * 1000.0)
        else:
            import time
            t = time.perf_counter()
            step()
            times.append((time.perf_counter() - t) * 1e6)
    microseconds = statistics.median(times)
    tokens_per_step = c["batch"] * c["seq"]
    return {"case": text, "pass": "step", "impl": "eager", "microseconds": microseconds,
            "tokens_per_s": tokens_per_step / (microseconds * 1e-6)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", action="append", default=[], help="a case (repeatable); default: the paper width at two depths")
    parser.add_argument("--json", required=True, help="write the results here")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    results = []
    for case in args.shape or DEFAULT_CASES:
        result = bench_case(case, args.repeats, args.warmup, args.device)
        results.append(result)
        print(f"{case}: {result['microseconds']:.0f} us/step, {result['tokens_per_s']:,.0f} tokens/s (torch {torch.__version__}, eager)")
        if args.device == "cuda":
            torch.cuda.empty_cache()
    with open(args.json, "w") as out:
        json.dump(results, out, indent=2)


if __name__ == "__main__":
    sys.exit(main())
