using System.Globalization;
using Keel.Native.Devices;
using Keel.Native.Kernels.Launchers;
using Keel.Native.Numerics;
using Keel.Native.Reference;

namespace Keel.Cli.Commands.Bench;

/// <summary>
/// <c>keel bench attention</c>: the flash attention kernels forward and backward, and the separate RoPE pass over q
/// and k, on batch x sequence = 16k tokens, hidden 2048 (32 heads of 64 or 16 of 128), two query heads per kv head,
/// causal and not; PyTorch's scaled_dot_product_attention on its flash and cuDNN back ends alongside
/// (perf/baselines/attention.py). FLOPs as FlashAttention counts them: forward 4 S² D Hq B, halved when causal;
/// backward 2.5x forward.
/// </summary>
internal sealed class AttentionSuite : IBenchmarkSuite
{
    public string Name => "attention";

    public string Description => "flash attention forward/backward and RoPE, 16k tokens, hidden 2048, against SDPA flash and cuDNN";

    public string? BaselineScript => "attention.py";

    public void Run(BenchContext context, BenchReport report)
    {
        var cases = context.Shapes.Count > 0 ? context.Shapes.Select(AttentionCase.Parse).ToList() : AttentionCase.Defaults;
        foreach (var c in cases)
        {
            Measure(context, report, c);
            context.Log.WriteLine($"  {c}: done");
        }
    }

    private static void Measure(BenchContext context, BenchReport report, AttentionCase c)
    {
        var device = context.Device;
        var options = c.Options;
        var queryShape = new TensorShape(c.Batch, c.Sequence, c.QueryHeads, c.HeadDim);
        var kvShape = new TensorShape(c.Batch, c.Sequence, c.KvHeads, c.HeadDim);
        using var q = device.Allocate(DType.BFloat16, queryShape);
        using var k = device.Allocate(DType.BFloat16, kvShape);
        using var v = device.Allocate(DType.BFloat16, kvShape);
        using var o = device.Allocate(DType.BFloat16, queryShape);
        using var dO = device.Allocate(DType.BFloat16, queryShape);
        using var dq = device.Allocate(DType.BFloat16, queryShape);
        using var dk = device.Allocate(DType.BFloat16, kvShape);
        using var dv = device.Allocate(DType.BFloat16, kvShape);
        using var lse = device.Allocate(DType.Float32, new TensorShape(c.Batch, c.QueryHeads, c.Sequence));
        context.FillRandom(q, seed: 1);
        context.FillRandom(k, seed: 2);
        context.FillRandom(v, seed: 3);
        context.FillRandom(dO, scale: 0.01, seed: 4);

        // Inputs and outputs of one case already exceed the L2 (q alone is 64 MiB), and the work is compute bound,
        // so one input set serves every run.
        double qBytes = queryShape.ElementCount * 2.0, kvBytes = kvShape.ElementCount * 2.0, lseBytes = c.Batch * (double)c.QueryHeads * c.Sequence * 4;
        var forwardFlops = options.ForwardFlops;

        var rope = context.MedianMicroseconds(_ =>
        {
            device.RopeForward(q, q);
            device.RopeForward(k, k);
        });
        report.Add(new BenchResult(c.ToString(), "rope", rope, 2 * (qBytes + kvBytes), 0));

        var forward = context.MedianMicroseconds(_ => device.AttentionForward(options, q, k, v, o, lse));
        report.Add(new BenchResult(c.ToString(), "forward", forward, 2 * qBytes + 2 * kvBytes + lseBytes, forwardFlops));

        var backward = context.MedianMicroseconds(_ => device.AttentionBackward(options, q, k, v, o, lse, dO, dq, dk, dv));
        report.Add(new BenchResult(c.ToString(), "backward", backward, 4 * qBytes + 4 * kvBytes + lseBytes, 2.5 * forwardFlops));
    }
}

/// <summary>
/// One attention benchmark case, written <c>b32-s512-h16-kv8-d128-causal</c> (<c>full</c> when not causal); on the
/// command line the batch and the heads may be left out: <c>s4096-d64-full</c> means 16k tokens and hidden 2048 with
/// two query heads per kv head. perf/baselines/attention.py reads and writes the same names.
/// </summary>
internal sealed record AttentionCase(int Batch, int Sequence, int QueryHeads, int KvHeads, int HeadDim, bool Causal)
{
    private const int Tokens = 16384, Hidden = 2048;

    /// <summary>Sequences 512 to 16k for head dims 64 and 128, causal and not.</summary>
    public static IReadOnlyList<AttentionCase> Defaults { get; } =
    [
        .. from headDim in new[] { 64, 128 }
           from causal in new[] { true, false }
           from sequence in new[] { 512, 1024, 2048, 4096, 8192, 16384 }
           select Parse($"s{sequence}-d{headDim}-{(causal ? "causal" : "full")}"),
    ];

    public AttentionOptions Options => new(Batch, Sequence, QueryHeads, KvHeads, HeadDim, Causal);

    /// <exception cref="ArgumentException">The text is not a case.</exception>
    public static AttentionCase Parse(string text)
    {
        int? batch = null, sequence = null, heads = null, kvHeads = null, headDim = null;
        bool? causal = null;
        foreach (var part in text.Split('-', StringSplitOptions.RemoveEmptyEntries))
        {
            if (part is "causal" or "full") causal = part == "causal";
            else if (part.StartsWith("kv", StringComparison.Ordinal)) kvHeads = Number(part[2..], text);
            else if (part[0] == 'b') batch = Number(part[1..], text);
            else if (part[0] == 's') sequence = Number(part[1..], text);
            else if (part[0] == 'h') heads = Number(part[1..], text);
            else if (part[0] == 'd') headDim = Number(part[1..], text);
            else throw Malformed(text);
        }
        if (sequence is not { } s || headDim is not { } d || causal is not { } isCausal) throw Malformed(text);
        var h = heads ?? Hidden / d;
        return new AttentionCase(batch ?? Math.Max(1, Tokens / s), s, h, kvHeads ?? Math.Max(1, h / 2), d, isCausal);
    }

    public override string ToString() =>
        $"b{Batch}-s{Sequence}-h{QueryHeads}-kv{KvHeads}-d{HeadDim}-{(Causal ? "causal" : "full")}";

    private static int Number(string digits, string text) =>
        int.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0 ? n : throw Malformed(text);

    private static ArgumentException Malformed(string text) =>
        new($"Attention case '{text}' is not of the form [b32-]s512[-h16][-kv8]-d128-causal|full.", "shape");
}
