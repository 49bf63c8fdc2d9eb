namespace Keel.Native.Model;

/// <summary>
/// Takes a model's gradients out of their bucket slots (<see cref="GradientBuckets"/>) as the backward produces them: the
/// model calls it around each sub-layer's backward, on the thread that runs the backward.
/// </summary>
internal interface IGradientBucketObserver
{
    /// <summary>Before sub-layer <paramref name="subLayer"/>'s backward: make its slot ready to accumulate into (cleared, or primed).</summary>
    void BeforeBackward(int subLayer);

    /// <summary>After it: the slot holds the sub-layer's matrix gradients of this backward; take them out.</summary>
    void AfterBackward(int subLayer);
}
