using UnifiedDiffusion.Core;
using Xunit;

namespace UnifiedDiffusion.Tests.Core;

public sealed class TimeGridTests
{
    [Fact]
    public void LeadingSpacingIsUniformFromTheBottom() =>
        Assert.Equal([901, 801, 701, 601, 501, 401, 301, 201, 101, 1, 0], TimeGrid.Create(1000, 10, TimeSpacing.Leading));

    [Fact]
    public void TrailingSpacingStartsAtTheTop() =>
        Assert.Equal([1000, 900, 800, 700, 600, 500, 400, 300, 200, 100, 0], TimeGrid.Create(1000, 10, TimeSpacing.Trailing));

    [Fact]
    public void QuadraticSpacingIsDenseNearZero()
    {
        // (i·√800/4)² + 1 for i = 0..4: 1, 51, 201, 451, 801.
        Assert.Equal([801, 451, 201, 51, 1, 0], TimeGrid.Create(1000, 5, TimeSpacing.Quadratic));
        // DDIM's code (numpy): int(linspace(0, √800, 10)²) + 1, descending.
        Assert.Equal([801, 633, 484, 356, 247, 159, 89, 40, 10, 1, 0], TimeGrid.Create(1000, 10, TimeSpacing.Quadratic));
    }

    [Theory]
    [InlineData(TimeSpacing.Leading)]
    [InlineData(TimeSpacing.Trailing)]
    [InlineData(TimeSpacing.Quadratic)]
    public void EveryGridHasKDistinctDescendingLevelsEndingAtZero(TimeSpacing spacing)
    {
        foreach (int k in new[] { 1, 2, 7, 50, 999, 1000 })
        {
            var grid = TimeGrid.Create(1000, k, spacing);
            Assert.Equal(k + 1, grid.Length);
            Assert.Equal(0, grid[^1]);
            Assert.InRange(grid[0], 1, 1000);
            for (int i = 1; i < grid.Length; i++) Assert.True(grid[i] < grid[i - 1], $"{spacing} K={k}: not descending at {i}");
        }
        Assert.Equal(Enumerable.Range(0, 1001).Reverse(), TimeGrid.Create(1000, 1000, spacing));
    }

    [Fact]
    public void ExplicitGridGetsItsTrailingZero()
    {
        Assert.Equal([999, 500, 0], TimeGrid.Explicit(1000, [999, 500]));
        Assert.Equal([999, 500, 0], TimeGrid.Explicit(1000, [999, 500, 0]));
        Assert.Equal([1000, 20, 3, 0], TimeGrid.Parse("1000, 20,3", 1000, 5));
        Assert.Equal(TimeGrid.Create(1000, 4, TimeSpacing.Trailing), TimeGrid.Parse("Trailing", 1000, 4));
        Assert.Equal(TimeGrid.Create(1000, 4, TimeSpacing.Leading), TimeGrid.Parse("uniform", 1000, 4));
        Assert.Equal(TimeGrid.Create(1000, 4, TimeSpacing.Quadratic), TimeGrid.Parse("quad", 1000, 4));
    }

    [Theory]
    [InlineData(1000, 0)]
    [InlineData(1000, 1001)]
    [InlineData(1000, -3)]
    [InlineData(0, 1)]
    public void CreateRejectsBadSizes(int levels, int steps) =>
        Assert.Throws<UdmException>(() => TimeGrid.Create(levels, steps));

    [Theory]
    [InlineData(new[] { 500, 500, 0 })]   // not strictly descending
    [InlineData(new[] { 200, 500 })]      // ascending
    [InlineData(new[] { 1001, 10 })]      // above T
    [InlineData(new[] { 10, -1 })]        // below 0
    [InlineData(new[] { 0 })]             // nothing above 0
    [InlineData(new int[0])]
    public void ExplicitRejectsBadGrids(int[] levels) =>
        Assert.Throws<UdmException>(() => TimeGrid.Explicit(1000, levels));

    [Theory]
    [InlineData("fast")]
    [InlineData("999,x,0")]
    [InlineData("10,20")]
    public void ParseRejectsUnknownSpecs(string spec) =>
        Assert.Throws<UdmException>(() => TimeGrid.Parse(spec, 1000, 10));
}
