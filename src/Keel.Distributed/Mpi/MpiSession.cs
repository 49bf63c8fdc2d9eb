namespace Keel.Distributed.Mpi;

/// <summary>
/// MPI in this process, from <c>MPI_Init_thread</c> to <c>MPI_Finalize</c> (<see cref="Dispose"/>): the world, the ranks of
/// this node, and abort. MPI can be initialized once per process, so there is at most one session.
/// <para>
/// <see cref="Initialize"/> asks for <c>MPI_THREAD_SERIALIZED</c> (calls may come from any thread, one at a time), sets
/// <c>MPI_ERRORS_RETURN</c> on <c>MPI_COMM_WORLD</c> so that errors come back as codes (and so as
/// <see cref="MpiException"/>s), and works on a duplicate of the world, so the library's messages never mix with another
/// library's on the same process. The node's ranks come from <c>MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)</c>: the
/// local rank is the rank among the processes that share memory with this one.
/// </para>
/// </summary>
public sealed unsafe class MpiSession : IDisposable
{
    /// <summary>Variables a launcher sets in each process it starts: Open MPI's mpirun, PMIx (srun --mpi=pmix, PRRTE), PMI-2 (srun --mpi=pmi2).</summary>
    public static IReadOnlyList<string> LauncherVariables { get; } = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"];

    private static int s_initialized;
    private readonly MpiCommunicator _worldHandle;
    private bool _disposed;

    private MpiSession(MpiCommunicator worldHandle, MpiCommunicator world, MpiCommunicator local)
    {
        _worldHandle = worldHandle;
        World = world;
        Local = local;
        ProcessorName = MpiNative.Text(&MpiNative.MPI_Get_processor_name, MpiNative.MPI_MAX_PROCESSOR_NAME, "MPI_Get_processor_name");
        LibraryVersion = MpiNative.Text(&MpiNative.MPI_Get_library_version, MpiNative.MPI_MAX_LIBRARY_VERSION_STRING, "MPI_Get_library_version").Split('\n')[0].Trim();
    }

    /// <summary>
    /// The launcher variable set in this process's environment (<see cref="LauncherVariables"/>), or null when it was
    /// started on its own. A process started on its own never loads MPI.
    /// </summary>
    public static string? LaunchedBy() =>
        LauncherVariables.FirstOrDefault(v => !string.IsNullOrEmpty(Environment.GetEnvironmentVariable(v)));

    /// <summary>A private duplicate of <c>MPI_COMM_WORLD</c>: every rank of the job.</summary>
    public MpiCommunicator World { get; }

    /// <summary>The ranks on this node (sharing memory with this process).</summary>
    public MpiCommunicator Local { get; }

    /// <summary>This process's rank in the job.</summary>
    public int Rank => World.Rank;

    /// <summary>The number of ranks in the job.</summary>
    public int Size => World.Size;

    /// <summary>This process's rank on its node: the GPU it uses.</summary>
    public int LocalRank => Local.Rank;

    /// <summary>The number of ranks on this node.</summary>
    public int LocalSize => Local.Size;

    /// <summary>The node's name as MPI reports it.</summary>
    public string ProcessorName { get; }

    /// <summary>The first line of <c>MPI_Get_library_version</c>, such as <c>Open MPI v4.1.4, ...</c>.</summary>
    public string LibraryVersion { get; }

    /// <summary>Initializes MPI (once per process) and makes the session's communicators.</summary>
    /// <exception cref="DllNotFoundException">libmpi was not found (the message lists every place tried).</exception>
    /// <exception cref="InvalidOperationException">MPI was initialized before in this process.</exception>
    /// <exception cref="MpiException">An MPI call failed, or MPI offers less than <c>MPI_THREAD_SERIALIZED</c>.</exception>
    public static MpiSession Initialize()
    {
        MpiLibrary.Load();
        if (Interlocked.Exchange(ref s_initialized, 1) != 0)
            throw new InvalidOperationException("MPI was initialized before in this process; it can be initialized once.");
        MpiNative.Check(MpiNative.MPI_Init_thread(null, null, MpiNative.MPI_THREAD_SERIALIZED, out var provided), "MPI_Init_thread");
        if (provided < MpiNative.MPI_THREAD_SERIALIZED)
        {
            MpiNative.MPI_Finalize();
            throw new MpiException("MPI_Init_thread", 0, $"this MPI provides thread level {provided}; Keel needs MPI_THREAD_SERIALIZED ({MpiNative.MPI_THREAD_SERIALIZED})");
        }
        var worldHandle = new MpiCommunicator(MpiHandles.CommWorld, ownsHandle: false);
        MpiCommunicator? world = null;
        try
        {
            MpiNative.Check(MpiNative.MPI_Comm_set_errhandler(worldHandle, MpiHandles.ErrorsReturn), "MPI_Comm_set_errhandler");
            // Duplicates inherit the error handler.
            MpiNative.Check(MpiNative.MPI_Comm_dup(worldHandle, out var dup), "MPI_Comm_dup");
            world = new MpiCommunicator(dup, ownsHandle: true);
            MpiNative.Check(MpiNative.MPI_Comm_split_type(world, MpiNative.MPI_COMM_TYPE_SHARED, world.Rank, MpiHandles.InfoNull, out var local), "MPI_Comm_split_type");
            return new MpiSession(worldHandle, world, new MpiCommunicator(local, ownsHandle: true));
        }
        catch
        {
            world?.Dispose();
            MpiNative.MPI_Finalize();
            throw;
        }
    }

    /// <summary>
    /// Ends the whole job (<c>MPI_Abort</c> on <c>MPI_COMM_WORLD</c>): the launcher stops every rank, which exits with a
    /// non-zero status. Does not return.
    /// </summary>
    public void Abort(int exitCode)
    {
        MpiNative.MPI_Abort(_worldHandle, exitCode);
        // MPI_Abort is not supposed to return; if this one did, the process still must not go on.
        Environment.Exit(exitCode);
    }

    /// <summary>Frees the communicators and finalizes MPI (every rank must call it).</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Local.Dispose();
        World.Dispose();
        _worldHandle.Dispose();
        MpiNative.Check(MpiNative.MPI_Finalize(), "MPI_Finalize");
    }
}
