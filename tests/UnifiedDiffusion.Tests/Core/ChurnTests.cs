using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Metrics;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Core;

/// <summary>Churn against hand-computed values: the share of changed tokens, the RMS change of floats, and chunked runs weighted by rows.</summary>
public sealed class ChurnTests
{
    private static readonly int[] Grid = [3, 2, 1, 0];

    private static SamplerProgress At(int index, Tensor estimate) =>
        new(new ReverseStep(Grid[index], Grid[index + 1], index, Grid), estimate, new PointPosterior(estimate), estimate);

    [Fact]
    public void TokensCountTheShareOfPositionsThatChanged()
    {
        using var scope = torch.NewDisposeScope();
        using var meter = new ChurnMeter();
        // Two sequences of 4 tokens: step 1 changes 2 of 8 positions, step 2 changes 1 of 8.
        meter.Record(At(0, torch.tensor(new long[] { 1, 2, 3, 4, 5, 6, 7, 8 }).reshape(2, 4)));
        meter.Record(At(1, torch.tensor(new long[] { 1, 9, 3, 4, 5, 6, 9, 8 }).reshape(2, 4)));
        meter.Record(At(2, torch.tensor(new long[] { 1, 9, 3, 4, 5, 6, 9, 1 }).reshape(2, 4)));
        Assert.True(meter.IsShareOfPositions);
        Assert.Equal([0.25, 0.125], meter.PerStep);
        Assert.Equal(0.1875, meter.Mean);
    }

    [Fact]
    public void FloatsGiveTheRmsChangeAndChunksWeighByTheirElements()
    {
        using var scope = torch.NewDisposeScope();
        using var meter = new ChurnMeter();
        // Chunk 1, one row of 2: step 1 moves by (3, 4). Chunk 2, three rows of 2: step 1 moves every value by 1.
        meter.Record(At(0, torch.tensor(new float[] { 0, 0 }).reshape(1, 2)));
        meter.Record(At(1, torch.tensor(new float[] { 3, 4 }).reshape(1, 2)));
        meter.Record(At(0, torch.zeros(3, 2)));
        meter.Record(At(1, torch.ones(3, 2)));
        Assert.False(meter.IsShareOfPositions);
        // √((9 + 16 + 6·1) / 8)
        Assert.Single(meter.PerStep);
        Assert.Equal(Math.Sqrt(31.0 / 8), meter.PerStep[0], 12);
    }
}
