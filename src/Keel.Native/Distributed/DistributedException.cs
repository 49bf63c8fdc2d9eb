namespace Keel.Native.Distributed;

/// <summary>
/// Thrown on every rank at once, with the same message, when the ranks found out together that the run cannot go on (a
/// rank's bad option or data, configs that differ between ranks): every rank can stop cleanly, and rank 0 alone needs to
/// say why. The message names the ranks concerned.
/// </summary>
public sealed class DistributedException(string message) : Exception(message);
