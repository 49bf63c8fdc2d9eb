using System.Diagnostics;
using Keel.Distributed.Mpi;

namespace Keel.Native.Tests.Support;

/// <summary>
/// Runs the <c>keel</c> command of these test binaries as an MPI job: <c>mpirun -np N dotnet keel.dll ARGS</c>, with
/// <c>--oversubscribe</c> (more ranks than cores) and, as root (CI), <c>--allow-run-as-root</c>.
/// </summary>
internal static class MpiLauncher
{
    /// <summary>
    /// Skips the test when mpirun or libmpi is missing, or fails it when <c>KEEL_REQUIRE_MPI=1</c> (as CI sets), so the
    /// data-parallel tests cannot pass by skipping where they are meant to run.
    /// </summary>
    public static void Require()
    {
        string? reason = null;
        if (FindMpirun() is null) reason = "mpirun is not on PATH (Debian: openmpi-bin libopenmpi-dev)";
        else if (!MpiLibrary.TryLoad(out var why)) reason = why;
        if (reason is null) return;
        if (Environment.GetEnvironmentVariable("KEEL_REQUIRE_MPI") == "1") Assert.Fail(reason + " (KEEL_REQUIRE_MPI=1)");
        Assert.Skip(reason);
    }

    /// <summary>The result of one job: mpirun's exit code, the ranks' output as mpirun forwards it, and the wall time.</summary>
    public sealed record Result(int Code, string Output, string Error, TimeSpan Elapsed)
    {
        public string All => Output + Error;
    }

    /// <summary>Starts <paramref name="apps"/> (each "ranks, then keel's arguments"; several make an MPMD job) and returns the running mpirun.</summary>
    public static Process Start(params (int Ranks, string[] Args)[] apps)
    {
        var start = new ProcessStartInfo(FindMpirun()!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (Environment.UserName == "root") start.ArgumentList.Add("--allow-run-as-root");
        start.ArgumentList.Add("--oversubscribe");
        var keel = Path.Combine(Path.GetDirectoryName(typeof(KeelCli).Assembly.Location)!, "keel.dll");
        var dotnet = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host ? host : "dotnet";
        for (var i = 0; i < apps.Length; i++)
        {
            if (i > 0) start.ArgumentList.Add(":");
            start.ArgumentList.Add("-np");
            start.ArgumentList.Add(apps[i].Ranks.ToString(System.Globalization.CultureInfo.InvariantCulture));
            start.ArgumentList.Add(dotnet);
            start.ArgumentList.Add(keel);
            foreach (var arg in apps[i].Args) start.ArgumentList.Add(arg);
        }
        return Process.Start(start)!;
    }

    /// <summary>Runs one job to its end (at most <paramref name="timeout"/>; a job still running then is killed and the test fails).</summary>
    public static Result Run(int ranks, string[] args, TimeSpan? timeout = null) => Run([(ranks, args)], timeout);

    /// <summary>Runs an MPMD job to its end.</summary>
    public static Result Run((int Ranks, string[] Args)[] apps, TimeSpan? timeout = null) => Wait(Start(apps), timeout ?? TimeSpan.FromMinutes(3));

    /// <summary>Waits for <paramref name="job"/> (killing it after <paramref name="timeout"/>, which fails the test).</summary>
    public static Result Wait(Process job, TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        var output = job.StandardOutput.ReadToEndAsync();
        var error = job.StandardError.ReadToEndAsync();
        if (!job.WaitForExit(timeout))
        {
            job.Kill(entireProcessTree: true);
            Assert.Fail($"mpirun was still running after {timeout.TotalSeconds:0} s.");
        }
        job.WaitForExit();
        return new Result(job.ExitCode, output.Result, error.Result, clock.Elapsed);
    }

    private static string? FindMpirun() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(folder => Path.Combine(folder, "mpirun")).FirstOrDefault(File.Exists);
}
