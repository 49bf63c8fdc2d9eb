using Keel.Native.Devices;

namespace Keel.Native.Distributed;

/// <summary>
/// The communication data-parallel training needs among the ranks of one job, each with its own device: reductions and
/// gathers of device tensors, and (as an <see cref="IRankGroup"/>) small exchanges of host values: losses, norms,
/// fingerprints, errors. Every rank must make the same calls in the same order. <see cref="Collectives.Open"/> picks the implementation: NCCL on a GPU (device
/// tensors stay on the GPU, queued on the device's stream), MPI on the CPU and emulated devices (whose memory is host
/// memory); host values always go over MPI.
/// <para>
/// Device operations are ordered after the device work queued before them and before the work queued after them, as
/// device ops are. Between <see cref="BeginOverlap"/> and <see cref="EndOverlap"/> they may instead run beside the device
/// work that follows (on a second stream); the fence <see cref="EndOverlap"/> returns orders later work after them
/// (<see cref="Wait"/>). Reductions are sums of Float32 (or, over MPI, Float64) tensors; gathers move any element type.
/// </para>
/// </summary>
public interface ICollectives : IRankGroup, IDisposable
{
    /// <summary>What carries the device tensors, for logs (<c>MPI over host memory</c>, <c>NCCL 2.21.5</c>).</summary>
    string Description { get; }

    /// <summary>Sums <paramref name="buffer"/> over every rank, in place on every rank.</summary>
    void AllReduceSum(Tensor buffer);

    /// <summary>Sums <paramref name="send"/> (<see cref="IRankGroup.Size"/> blocks of <paramref name="shard"/>'s length) over every rank; block r lands in rank r's <paramref name="shard"/>.</summary>
    void ReduceScatterSum(Tensor send, Tensor shard);

    /// <summary>
    /// Gathers every rank's <paramref name="shard"/> into <paramref name="receive"/> (rank r's at block r). The shard may be
    /// this rank's own block of <paramref name="receive"/> (in place).
    /// </summary>
    void AllGather(Tensor shard, Tensor receive);

    /// <summary>Sums <paramref name="send"/> over every rank into <paramref name="receive"/> on <paramref name="root"/> (other ranks pass an empty receive).</summary>
    void ReduceSum(Tensor send, Tensor receive, int root);

    /// <summary>Starts a run of device operations that may overlap the device work queued after them (until <see cref="EndOverlap"/>).</summary>
    void BeginOverlap();

    /// <summary>Ends the run <see cref="BeginOverlap"/> started; the fence marks its end.</summary>
    CollectiveFence EndOverlap();

    /// <summary>Orders the device work queued from now on after the overlapped operations up to <paramref name="fence"/>.</summary>
    void Wait(CollectiveFence fence);

    /// <summary>
    /// Blocks until the device work queued so far, collectives included, has finished; a collective that a failed peer
    /// will never complete is reported as an exception instead of a wait without end.
    /// </summary>
    void WaitForDevice();

    /// <summary>Tears down device communication at once, stopping collectives in flight (before the job is aborted after a failure).</summary>
    void Abort();
}

/// <summary>The end of a run of overlapped collectives (<see cref="ICollectives.EndOverlap"/>); default: nothing to wait for.</summary>
/// <param name="Id">Which of the implementation's markers; 0 for none.</param>
public readonly record struct CollectiveFence(int Id);
