using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Output;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Images;

public sealed class ImageGridTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    // Quantisation to 8 bits moves a value in [−1, 1] by at most half a step, 1/255.
    private const float Quantum = 1f / 255 + 1e-6f;

    [Fact]
    public void GrayGridRoundTripsEveryPixelAndHasTheDocumentedSize()
    {
        using var scope = torch.NewDisposeScope();
        const int n = 4, h = 6, w = 5, columns = 3, scale = 2, padding = 2;
        var images = torch.rand([n, 1, h, w], generator: new Generator(5)) * 2 - 1;
        images[0, 0, 0, 0] = torch.tensor(-1f);
        images[0, 0, 0, 1] = torch.tensor(1f);
        string path = _folder.File("sub/grid.png");
        ImageGrid.Save(path, images, columns, scale, padding);
        Assert.Empty(Directory.GetFiles(_folder.File("sub"), "*.tmp*"));

        var grid = ImageGrid.Load(path, 1);
        int width = columns * (w * scale + padding) + padding, height = 2 * (h * scale + padding) + padding;
        Assert.Equal(new long[] { 1, 1, height, width }, grid.shape);
        var g = grid[0, 0];
        for (int k = 0; k < n; k++)
        {
            int top = padding + k / columns * (h * scale + padding), left = padding + k % columns * (w * scale + padding);
            for (int dy = 0; dy < scale; dy++)
                for (int dx = 0; dx < scale; dx++)
                {
                    var cell = g[TensorIndex.Slice(top + dy, top + h * scale, scale), TensorIndex.Slice(left + dx, left + w * scale, scale)];
                    float error = (cell - images[k, 0]).abs().max().item<float>();
                    Assert.True(error <= Quantum, $"image {k}: max error {error}");
                }
        }
        Assert.Equal(-1f, g[padding, padding].item<float>());
        Assert.Equal(1f, g[padding, padding + scale].item<float>());
        // Padding (and the empty sixth cell) is gray 128.
        float gray = ImageGrid.PaddingLevel / 127.5f - 1;
        Assert.Equal(gray, g[0, 0].item<float>(), 1e-6f);
        Assert.Equal(gray, g[height - 1, width - 1].item<float>(), 1e-6f);
        Assert.Equal(gray, g[padding + h * scale, padding].item<float>(), 1e-6f);
    }

    [Fact]
    public void RgbGridRoundTripsAndLoadsAsGrayByLuma()
    {
        using var scope = torch.NewDisposeScope();
        var images = torch.rand([2, 3, 4, 4], generator: new Generator(6)) * 2 - 1;
        string path = _folder.File("rgb.png");
        ImageGrid.Save(path, images, columns: 2, scale: 1, padding: 0);

        var rgb = ImageGrid.Load(path, 3);
        Assert.Equal(new long[] { 1, 3, 4, 8 }, rgb.shape);
        var both = torch.cat([images[0], images[1]], 2).unsqueeze(0);
        Assert.True((rgb - both).abs().max().item<float>() <= Quantum);

        var gray = ImageGrid.Load(path, 1);
        Assert.Equal(new long[] { 1, 1, 4, 8 }, gray.shape);
        var luma = rgb[.., 0] * 0.299 + rgb[.., 1] * 0.587 + rgb[.., 2] * 0.114;
        Assert.True((gray[.., 0] - luma).abs().max().item<float>() <= 1e-5f);
    }

    [Fact]
    public void MaskIsTrueWhereWhite()
    {
        using var scope = torch.NewDisposeScope();
        var picture = torch.full([1, 1, 4, 6], -1f);
        picture[.., .., .., TensorIndex.Slice(0, 3)] = torch.tensor(1f); // left half white = keep
        picture[0, 0, 3, 0] = torch.tensor(0.01f); // byte 129: still white
        picture[0, 0, 3, 5] = torch.tensor(-0.01f); // byte 126: black
        string path = _folder.File("mask.png");
        ImageGrid.Save(path, picture, columns: 1, scale: 1, padding: 0);

        var mask = ImageGrid.LoadMask(path, 4, 6);
        Assert.Equal(new long[] { 1, 1, 4, 6 }, mask.shape);
        Assert.Equal(ScalarType.Bool, mask.dtype);
        Assert.Equal(12, mask.sum().item<long>());
        Assert.True(mask[0, 0, .., TensorIndex.Slice(0, 3)].all().item<bool>());
        Assert.False(mask[0, 0, .., TensorIndex.Slice(3, 6)].any().item<bool>());

        var e = Assert.Throws<UdmException>(() => ImageGrid.LoadMask(path, 28, 28));
        Assert.Contains("6×4", e.Message);
    }

    [Fact]
    public void UnreadableImagesAreOneLineUserErrors()
    {
        string junk = _folder.File("junk.png");
        File.WriteAllText(junk, "this is not a picture");
        var e = Assert.Throws<UdmException>(() => ImageGrid.Load(junk, 1));
        Assert.DoesNotContain('\n', e.Message);
        Assert.Throws<UdmException>(() => ImageGrid.Load(_folder.File("missing.png"), 1));
        Assert.Throws<UdmException>(() => ImageGrid.LoadMask(junk, 2, 2));
    }
}
