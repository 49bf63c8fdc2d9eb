using Keel.Cuda;
using Keel.Distributed.Mpi;
using Keel.Native.Devices;
using Keel.Native.Distributed;
using Keel.Native.Training;

namespace Keel.Cli.Commands;

/// <summary>
/// <c>keel train</c> as one rank of a job an MPI launcher started (<c>mpirun -np N keel train ...</c>, <c>srun --mpi=pmix</c>):
/// every rank runs this with the same options and trains data-parallel on its own device (the GPU of its local rank).
/// <para>
/// Failures end every rank, never one alone. Up to the first step the ranks agree after each stage (options and data, the
/// device, the trainer, which also checks that every rank was given the same run): if any rank failed, every rank stops
/// with exit code 1 and rank 0 prints the reasons, each with the ranks it concerns. From then on the steps are collective,
/// so a rank that fails prints which rank it is and why, and ends the whole job (NCCL abort, then MPI abort): the launcher
/// stops the others, and every rank exits non-zero. A rank that dies is noticed by the launcher, which does the same.
/// Rank 0 writes to the console, the metrics and the plot; rank K writes its output to <c>rank-K.log</c> in the run folder.
/// </para>
/// </summary>
internal static class RankedTrainCommand
{
    public static int Run(TrainOptions options, TextWriter output, TextWriter error)
    {
        using var session = MpiSession.Initialize();
        var ranks = new MpiRankGroup(session.World);
        var primary = session.Rank == 0;
        var who = $"rank {session.Rank} of {session.Size} ({session.ProcessorName}, pid {Environment.ProcessId})";
        TextWriter? log = null;
        IDevice? device = null;
        ProfiledDevice? profiled = null;
        ICollectives? collectives = null;
        Trainer? trainer = null;
        try
        {
            var run = Agreed(ranks, options, () => TrainCommand.Prepare(options));
            // Each rank chose a default run folder from its own clock; rank 0's is the run's.
            run = run with { Folder = ranks.BroadcastText(run.Folder) };
            log = Agreed(ranks, options, () => primary ? output : OpenLog(run.Folder, session.Rank));
            log.WriteLine($"Rank    {who}, local rank {session.LocalRank} of {session.LocalSize}; {session.LibraryVersion}");
            (device, profiled) = Agreed(ranks, options, () => TrainCommand.OpenDevice(options, log, gpu: session.LocalRank));
            collectives = Collectives.Open(session.World, device);
            var opened = collectives;
            trainer = Agreed(ranks, options, () => TrainCommand.CreateTrainer(run, device, opened, log));
            var code = TrainCommand.Train(trainer, run, device, profiled, log, error);
            Release(trainer, collectives, device);
            return code;
        }
        catch (DistributedException e)
        {
            // Every rank is here, with the same message, and nothing is in flight: stop cleanly, say it once.
            Release(trainer, collectives, device);
            if (primary) error.WriteLine($"keel: {e.Message}");
            else log?.WriteLine($"keel: {e.Message}");
            return 1;
        }
        catch (Exception e)
        {
            // This rank alone failed while the others may wait for it in a collective: say who and why, and end the job.
            var text = $"keel: {who} failed: {Describe(e, options)}; ending every rank.";
            error.WriteLine(text);
            if (!ReferenceEquals(log, output)) log?.WriteLine(text);
            log?.Flush();
            error.Flush();
            try
            {
                collectives?.Abort();
            }
            catch (CudaException)
            {
                // The job ends below in any case.
            }
            session.Abort(1);
            return 1;
        }
        finally
        {
            if (log is not null && !ReferenceEquals(log, output)) log.Dispose();
        }
    }

    /// <summary>
    /// Runs <paramref name="stage"/> on every rank and agrees on the outcome: an expected failure on any rank (bad input, a
    /// missing library or file) stops every rank with <see cref="DistributedException"/>; an unexpected one is this rank's
    /// alone and propagates.
    /// </summary>
    private static T Agreed<T>(IRankGroup ranks, TrainOptions options, Func<T> stage)
    {
        T result = default!;
        string? failure = null;
        try
        {
            result = stage();
        }
        catch (DistributedException)
        {
            // Already agreed: every rank threw it.
            throw;
        }
        catch (Exception e) when (Expected(e))
        {
            failure = KeelCli.Message(e, options);
        }
        ranks.Agree(failure);
        return result;
    }

    // A device that cannot be opened (the emulator without a compiler) says so with InvalidOperationException.
    private static bool Expected(Exception e) => KeelCli.IsExpected(e) || e is InvalidOperationException;

    private static string Describe(Exception e, TrainOptions options) =>
        Expected(e) ? $"{e.GetType().Name}: {KeelCli.Message(e, options)}" : e.ToString();

    private static StreamWriter OpenLog(string folder, int rank)
    {
        Directory.CreateDirectory(folder);
        return new StreamWriter(Path.Combine(folder, $"rank-{rank}.log"), append: true) { AutoFlush = true };
    }

    private static void Release(Trainer? trainer, ICollectives? collectives, IDevice? device)
    {
        trainer?.Dispose();
        collectives?.Dispose();
        device?.Dispose();
    }
}
