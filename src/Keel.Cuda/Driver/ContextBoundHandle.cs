namespace Keel.Cuda.Driver;

/// <summary>
/// A handle to an object that lives in a <see cref="CudaContext"/>: memory, streams, events, modules, graphs and the
/// library handles bound to a context. It holds a claim on its context from creation to release, so the context outlives
/// it whatever the order of the <see cref="IDisposable.Dispose"/> calls, and its release makes that context current,
/// destroys the object and drops the claim.
/// </summary>
/// <remarks>
/// Operations make the context current through <see cref="CudaContext.MakeCurrent"/>, which takes the context as a
/// handle and so refuses a disposed one. Only the release binds the context by its raw value: the claim keeps that
/// value valid after the context object itself was disposed, when the marshaller would refuse it.
/// </remarks>
public abstract class ContextBoundHandle : CudaHandle
{
    private protected ContextBoundHandle(CudaContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Context = context;
    }

    /// <summary>The context the object lives in.</summary>
    public CudaContext Context { get; }

    /// <summary>A library call that creates the object from <paramref name="state"/> and checks its status.</summary>
    private protected delegate void NativeCreate<TState>(TState state, out IntPtr handle) where TState : allows ref struct;

    /// <summary>
    /// Claims the context and runs <paramref name="create"/>, after which this object owns what it created. This object
    /// exists before the native one, so nothing can fail between the two and leak it. The caller makes the context
    /// current first where the call needs it. On failure the claim is dropped, this (still empty) object disposed, and
    /// the exception rethrown.
    /// </summary>
    private protected void Create<TState>(TState state, NativeCreate<TState> create) where TState : allows ref struct
    {
        try
        {
            Context.AddDependent();
        }
        catch
        {
            Dispose();
            throw;
        }
        try
        {
            create(state, out var created);
            SetHandle(created);
        }
        catch
        {
            Context.RemoveDependent();
            Dispose();
            throw;
        }
    }

    /// <summary>Destroys the native object, with its context current; true when the library reports success.</summary>
    private protected abstract bool Destroy(IntPtr handle);

    /// <summary>
    /// Drops what the object holds besides its context (a cuBLAS handle's stream and workspace); runs after
    /// <see cref="Destroy"/>, whether or not that succeeded or ran.
    /// </summary>
    private protected virtual void DropHeld()
    {
    }

    /// <inheritdoc />
    protected sealed override bool ReleaseHandle()
    {
        // The destroy calls act in the current context: if binding ours failed, the object is left to the context.
        var destroyed = Released(CudaDriverNative.cuCtxSetCurrent(Context.ClaimedHandle), "cuCtxSetCurrent") && Destroy(handle);
        DropHeld();
        Context.RemoveDependent();
        return destroyed;
    }
}
