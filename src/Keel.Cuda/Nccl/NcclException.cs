namespace Keel.Cuda.Nccl;

/// <summary>
/// An NCCL call failed, or the communicator reported an asynchronous error. The message names the call, NCCL's name and
/// description of the result, and NCCL's last-error text (<c>ncclGetLastError</c>), which says what went wrong where.
/// </summary>
public sealed class NcclException(string call, int status, string errorName, string? description) : CudaException(call, status, errorName, description);
