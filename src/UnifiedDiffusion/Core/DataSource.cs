using TorchSharp;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Core;

/// <summary>
/// Training data as the trainer sees it: batches drawn with a caller-owned generator, so that a
/// seeded run is reproducible and a resumed run continues the same stream.
/// </summary>
public interface IDataSource
{
    /// <summary>A short name, e.g. "gmm8".</summary>
    string Name { get; }

    /// <summary>The shape of one sample, without the batch dimension.</summary>
    long[] SampleShape { get; }

    /// <summary>Draws a batch of <paramref name="count"/> samples.</summary>
    Tensor Sample(int count, Generator generator, Device? device = null);
}

/// <summary>
/// A data set whose samples carry class labels (0..<see cref="ClassCount"/>−1), for
/// class-conditional models. The trainer hands the labels of each batch to the loss.
/// </summary>
public interface ILabeledDataSource : IDataSource
{
    /// <summary>The number of classes.</summary>
    int ClassCount { get; }

    /// <summary>Draws a batch and its labels (int64 [count]).</summary>
    (Tensor Samples, Tensor Labels) SampleLabeled(int count, Generator generator, Device? device = null);
}
