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
