namespace Keel.Native.Training;

/// <summary>AdamW's hyper-parameters for one step (decoupled weight decay, as in Loshchilov and Hutter).</summary>
/// <param name="LearningRate">The step size at this step (the schedule's value).</param>
/// <param name="Beta1">First-moment decay; the paper uses 0.9.</param>
/// <param name="Beta2">Second-moment decay; the paper uses 0.95.</param>
/// <param name="Epsilon">Added to the square root of the second moment.</param>
/// <param name="WeightDecay">Decoupled weight decay; the paper uses 0.01.</param>
public readonly record struct AdamWHyperparameters(float LearningRate, float Beta1 = 0.9f, float Beta2 = 0.95f,
                                                   float Epsilon = 1e-8f, float WeightDecay = 0.01f)
{
    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> naming the first value out of range.</summary>
    public void Validate()
    {
        if (!(LearningRate >= 0) || float.IsInfinity(LearningRate))
            throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "The learning rate must be finite and non-negative.");
        if (!(Beta1 >= 0 && Beta1 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta1), Beta1, "Beta1 must lie in [0, 1).");
        if (!(Beta2 >= 0 && Beta2 < 1)) throw new ArgumentOutOfRangeException(nameof(Beta2), Beta2, "Beta2 must lie in [0, 1).");
        if (!(Epsilon > 0)) throw new ArgumentOutOfRangeException(nameof(Epsilon), Epsilon, "Epsilon must be positive.");
        if (!(WeightDecay >= 0)) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "Weight decay must be non-negative.");
    }
}
