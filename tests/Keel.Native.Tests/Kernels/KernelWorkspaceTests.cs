using System.Runtime.InteropServices;
using Keel.Native.Kernels.Launchers;

namespace Keel.Native.Tests.Kernels;

/// <summary>
/// The launchers' scratch: a buffer grows only after the work queued on it has finished, keeps its address while it is
/// large enough, and cannot move while a CUDA graph is being captured or a captured one is open (which would leave the
/// graph writing into freed memory); the message names the buffer and the sizes. Host memory stands in for the device.
/// </summary>
public sealed class KernelWorkspaceTests
{
    [Fact]
    public void AGrownBufferIsFreedOnlyAfterTheQueuedWorkHasFinished()
    {
        var events = new List<string>();
        using var workspace = Workspace(events);
        var first = workspace.Get(KernelScratch.AttentionBackward, DType.Float32, 100);
        Assert.Equal(["allocate 400"], events);
        Assert.Equal(first.Address, workspace.Get(KernelScratch.AttentionBackward, DType.Float32, 50).Address);
        workspace.Reserve(KernelScratch.AttentionBackward, 400);
        Assert.Equal(["allocate 400"], events);

        var grown = workspace.Get(KernelScratch.AttentionBackward, DType.Float32, 200);
        Assert.Equal(["allocate 400", "wait", "free 400", "allocate 800"], events);
        Assert.Equal(800, workspace.Bytes(KernelScratch.AttentionBackward));
        Assert.Equal(2, workspace.Generation(KernelScratch.AttentionBackward));
        Assert.Equal(DType.Float32, grown.DType);
        Assert.Equal(200, grown.Length);
    }

    [Fact]
    public void OnlyTheTokenErrorWordStartsZeroed()
    {
        var events = new List<string>();
        using var workspace = Workspace(events);
        workspace.Get(KernelScratch.EmbeddingSort, DType.Int32, 8);
        workspace.Get(KernelScratch.TokenErrors, DType.Int32, EmbeddingKernels.ErrorWords);
        Assert.Equal(["allocate 32", "allocate 16", "clear 16"], events);
        Assert.True(workspace.Find(KernelScratch.RopeTable).IsEmpty);
        Assert.Equal(16, workspace.Find(KernelScratch.TokenErrors).ByteLength);
    }

    [Fact]
    public void NoBufferMovesDuringACaptureOrWhileACapturedGraphIsOpen()
    {
        var events = new List<string>();
        using var workspace = Workspace(events);
        workspace.Reserve(KernelScratch.ResidualNormPartials, 1024);
        var reserved = workspace.Find(KernelScratch.ResidualNormPartials).Address;

        workspace.RunFrozen(() =>
        {
            Assert.True(workspace.IsFrozen);
            Assert.Equal(reserved, workspace.Get(KernelScratch.ResidualNormPartials, DType.Float32, 256).Address);
            var error = Assert.Throws<InvalidOperationException>(() => workspace.Get(KernelScratch.ResidualNormPartials, DType.Float32, 257));
            Assert.Contains("residual-norm gain partial sums holds 1024 bytes and this call needs 1028", error.Message);
            Assert.Contains("a CUDA graph capture is running", error.Message);
            // Nothing may be allocated inside a capture, a first buffer included.
            Assert.Throws<InvalidOperationException>(() => workspace.Get(KernelScratch.AttentionBackward, DType.Float32, 1));
        });
        Assert.False(workspace.IsFrozen);

        var graph = new OpenHandle();
        workspace.FreezeWhileOpen(graph);
        var open = Assert.Throws<InvalidOperationException>(() => workspace.Reserve(KernelScratch.ResidualNormPartials, 2048));
        Assert.Contains("a captured CUDA graph is open", open.Message);
        // A buffer the graph cannot know (none existed when it was captured) may still be made.
        workspace.Get(KernelScratch.GradientNormPartials, DType.Float32, 4);
        Assert.Equal(["allocate 1024", "allocate 16"], events);

        graph.Dispose();
        Assert.False(workspace.IsFrozen);
        workspace.Reserve(KernelScratch.ResidualNormPartials, 2048);
        Assert.Equal(["allocate 1024", "allocate 16", "wait", "free 1024", "allocate 2048"], events);
    }

    [Fact]
    public void TheRopeTableIsBuiltOnceForItsReservationAndNotRebuiltUnderAnOpenGraph()
    {
        var runtime = new RecordingKernelRuntime(4);
        using var host = new CpuDevice();
        using var workspace = new KernelWorkspace(bytes => host.Allocate(DType.Int32, new TensorShape((bytes + 3) / 4)), host.Clear, () => { });
        workspace.Reserve(KernelScratch.RopeTable, RopeKernels.TableElements(64, 16) * sizeof(float));
        var rope = new RopeKernels(runtime, workspace);
        using var shortSequence = host.Allocate(DType.BFloat16, new TensorShape(2, 16, 2, 16));
        using var fullSequence = host.Allocate(DType.BFloat16, new TensorShape(1, 64, 2, 16));
        using var otherHeads = host.Allocate(DType.BFloat16, new TensorShape(1, 8, 1, 32));

        rope.Rotate(shortSequence, shortSequence, 10_000f, inverse: false);
        rope.Rotate(fullSequence, fullSequence, 10_000f, inverse: true);
        // One table for the 64 positions reserved, built by the first rotation and read by both.
        Assert.Equal(["keel_rope_table", "keel_rope_rotate", "keel_rope_rotate"], runtime.Launches.Select(l => l.Name));
        var table = workspace.Find(KernelScratch.RopeTable).Address;
        Assert.All(runtime.Launches, launch => Assert.Contains(table, launch.Pointers));

        var graph = new OpenHandle();
        workspace.FreezeWhileOpen(graph);
        var error = Assert.Throws<InvalidOperationException>(() => rope.Rotate(otherHeads, otherHeads, 10_000f, inverse: false));
        Assert.Contains("built for head dimension 16", error.Message);
        Assert.Throws<InvalidOperationException>(() => rope.Rotate(otherHeads, otherHeads, 500_000f, inverse: false));
        graph.Dispose();
        rope.Rotate(otherHeads, otherHeads, 10_000f, inverse: false);
        Assert.Equal("keel_rope_table", runtime.Launches[^2].Name);
    }

    /// <summary>A workspace of host memory that logs its allocations, frees, clears and waits.</summary>
    private static KernelWorkspace Workspace(List<string> events) => new(
        bytes =>
        {
            events.Add($"allocate {bytes}");
            var shape = new TensorShape((bytes + 3) / 4);
            return new DeviceBuffer(TestDevices.Reference, new Logged(events, shape.ElementCount * sizeof(int)), DType.Int32, shape);
        },
        tensor => events.Add($"clear {tensor.ByteLength}"),
        () => events.Add("wait"));

    private sealed class Logged(List<string> events, long bytes) : DeviceAllocation(Allocate(bytes), bytes)
    {
        private static ulong Allocate(long bytes)
        {
            unsafe
            {
                return (ulong)NativeMemory.AlignedAlloc((nuint)bytes, 256);
            }
        }

        protected override unsafe void Release()
        {
            events.Add($"free {ByteLength}");
            NativeMemory.AlignedFree((void*)Address);
        }
    }

    /// <summary>Stands for an executable CUDA graph: open until disposed.</summary>
    private sealed class OpenHandle() : SafeHandle(1, ownsHandle: true)
    {
        public override bool IsInvalid => false;

        protected override bool ReleaseHandle() => true;
    }
}
