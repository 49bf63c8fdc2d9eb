namespace Keel.Cuda;

/// <summary>
/// A CUDA, NVRTC, cuBLAS or cuBLASLt call returned an error status. The message names the call, the error's
/// symbolic name (for example <c>CUDA_ERROR_OUT_OF_MEMORY</c>) and its description where the library has one.
/// </summary>
public class CudaException : Exception
{
    /// <summary>Creates the exception for a failed <paramref name="call"/>.</summary>
    public CudaException(string call, int status, string errorName, string? description = null)
        : base(description is null ? $"{call} failed: {errorName} ({status})" : $"{call} failed: {errorName} ({status}): {description}")
    {
        Call = call;
        Status = status;
        ErrorName = errorName;
    }

    /// <summary>The API function that failed, such as <c>cuMemAlloc</c>.</summary>
    public string Call { get; }

    /// <summary>The numeric status the call returned.</summary>
    public int Status { get; }

    /// <summary>The status's symbolic name, such as <c>CUDA_ERROR_OUT_OF_MEMORY</c>.</summary>
    public string ErrorName { get; }
}
