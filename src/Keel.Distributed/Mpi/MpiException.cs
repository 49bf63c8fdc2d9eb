namespace Keel.Distributed.Mpi;

/// <summary>An MPI call returned an error code. The message names the call and gives MPI's own description of the error.</summary>
public sealed class MpiException : Exception
{
    /// <summary>Creates the exception for a failed <paramref name="call"/>.</summary>
    public MpiException(string call, int code, string description)
        : base($"{call} failed: {description} (MPI error {code})")
    {
        Call = call;
        Code = code;
    }

    /// <summary>The MPI function that failed, such as <c>MPI_Allreduce</c>.</summary>
    public string Call { get; }

    /// <summary>The error code it returned.</summary>
    public int Code { get; }
}
