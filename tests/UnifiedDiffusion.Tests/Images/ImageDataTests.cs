using System.IO.Compression;
using System.Text;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Images;

public sealed class ImageDataTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    // 5 images of 3×4 whose pixel (i, r, c) is 50·i + 4·r + c, and labels 0..4 reversed.
    private static IdxImages Fixture()
    {
        var pixels = new byte[5 * 3 * 4];
        for (int i = 0; i < 5; i++)
            for (int r = 0; r < 3; r++)
                for (int c = 0; c < 4; c++)
                    pixels[i * 12 + r * 4 + c] = (byte)(50 * i + 4 * r + c);
        return new IdxImages(pixels, 5, 3, 4);
    }

    private static readonly byte[] FixtureLabels = [4, 3, 2, 1, 0];

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void IdxRoundTripsImagesAndLabels(bool gzip)
    {
        var images = Fixture();
        string ip = _folder.File(gzip ? "img.gz" : "img"), lp = _folder.File(gzip ? "lab.gz" : "lab");
        Idx.WriteImages(ip, images, gzip);
        Idx.WriteLabels(lp, FixtureLabels, gzip);
        var raw = File.ReadAllBytes(ip);
        Assert.Equal(gzip, raw[0] == 0x1f && raw[1] == 0x8b);
        if (!gzip) Assert.Equal(new byte[] { 0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 3, 0, 0, 0, 4 }, raw[..16]);

        var back = Idx.ReadImages(ip);
        Assert.Equal((5, 3, 4), (back.Count, back.Rows, back.Columns));
        Assert.Equal(images.Pixels, back.Pixels);
        Assert.Equal(FixtureLabels, Idx.ReadLabels(lp));
    }

    [Fact]
    public void TruncatedIdxFileIsAUserErrorThatSaysTruncatedAndHowToFetchAgain()
    {
        string ip = _folder.File("img");
        Idx.WriteImages(ip, Fixture());
        var raw = File.ReadAllBytes(ip);
        File.WriteAllBytes(ip, raw[..(raw.Length - 7)]);
        var e = Assert.Throws<UdmException>(() => Idx.ReadImages(ip, "mnist"));
        Assert.Contains("truncated", e.Message);
        Assert.Contains("udm data get mnist", e.Message);
        Assert.DoesNotContain('\n', e.Message);

        string lp = _folder.File("lab");
        Idx.WriteLabels(lp, FixtureLabels);
        File.WriteAllBytes(lp, File.ReadAllBytes(lp)[..10]);
        Assert.Contains("truncated", Assert.Throws<UdmException>(() => Idx.ReadLabels(lp)).Message);
    }

    [Fact]
    public void TruncatedGzipIsAUserError()
    {
        string ip = _folder.File("img.gz");
        Idx.WriteImages(ip, new IdxImages(Enumerable.Range(0, 4000).Select(i => (byte)(i * 7919 % 251)).ToArray(), 10, 20, 20), gzip: true);
        var raw = File.ReadAllBytes(ip);
        File.WriteAllBytes(ip, raw[..(raw.Length / 2)]);
        var e = Assert.Throws<UdmException>(() => Idx.ReadImages(ip, "fashion"));
        Assert.Contains("truncated", e.Message);
    }

    [Fact]
    public void WrongMagicMissingFileAndAbsurdHeaderAreUserErrors()
    {
        string ip = _folder.File("img"), lp = _folder.File("lab");
        Idx.WriteImages(ip, Fixture());
        Idx.WriteLabels(lp, FixtureLabels);
        Assert.Contains("is not an IDX image file", Assert.Throws<UdmException>(() => Idx.ReadImages(lp)).Message);
        Assert.Contains("is not an IDX label file", Assert.Throws<UdmException>(() => Idx.ReadLabels(ip)).Message);
        Assert.Contains("does not exist", Assert.Throws<UdmException>(() => Idx.ReadImages(_folder.File("none"))).Message);

        var raw = File.ReadAllBytes(ip);
        raw[8] = 0x7f; // rows = 2 billion
        File.WriteAllBytes(ip, raw);
        Assert.Contains("absurd", Assert.Throws<UdmException>(() => Idx.ReadImages(ip)).Message);
    }

    [Fact]
    public void FromIdxScalesToMinusOneOneAndKeepsLabels()
    {
        string ip = _folder.File("img"), lp = _folder.File("lab");
        var pixels = new byte[3 * 2 * 2];
        pixels[0] = 255; // image 0 has one white pixel, the rest black
        pixels[5] = 51; // image 1 pixel (0, 1) = 51 → 51/127.5 − 1 = −0.6
        Idx.WriteImages(ip, new IdxImages(pixels, 3, 2, 2));
        Idx.WriteLabels(lp, [2, 0, 1]);
        using var data = ImageDataset.FromIdx("tiny", ip, lp);
        Assert.Equal(new long[] { 1, 2, 2 }, data.SampleShape);
        Assert.Equal(3, data.Count);
        Assert.Equal(3, data.ClassCount);
        Assert.Equal(new long[] { 3, 1, 2, 2 }, data.Images.shape);
        Assert.Equal(ScalarType.Float32, data.Images.dtype);
        Assert.Equal(1f, data.Images[0, 0, 0, 0].item<float>());
        Assert.Equal(-1f, data.Images[0, 0, 1, 1].item<float>());
        Assert.Equal(-0.6f, data.Images[1, 0, 0, 1].item<float>(), 1e-6f);
        Assert.Equal(new long[] { 2, 0, 1 }, data.Labels.data<long>().ToArray());

        Idx.WriteLabels(lp, [2, 0]);
        Assert.Contains("labels", Assert.Throws<UdmException>(() => ImageDataset.FromIdx("tiny", ip, lp)).Message);
    }

    [Fact]
    public void DigitsCsvReadsGzipWithFloatsAndHeaderAndRejectsBadRows()
    {
        var text = new StringBuilder("p0");
        for (int i = 1; i < 64; i++) text.Append(",p").Append(i);
        text.Append(",label\n");
        for (int row = 0; row < 3; row++)
        {
            var values = Enumerable.Range(0, 64).Select(i => ((i + row) % 17).ToString("0.000000000000000000e+00", System.Globalization.CultureInfo.InvariantCulture));
            text.Append(string.Join(',', values)).Append(',').Append((row * 3).ToString("0.0", System.Globalization.CultureInfo.InvariantCulture)).Append('\n');
        }
        string path = _folder.File("digits.csv.gz");
        using (var file = File.Create(path))
        using (var zip = new GZipStream(file, CompressionLevel.Fastest))
            zip.Write(Encoding.UTF8.GetBytes(text.ToString()));

        var set = DigitsCsv.Read(path);
        Assert.Equal(3, set.Count);
        Assert.Equal(new byte[] { 0, 3, 6 }, set.Labels);
        Assert.Equal(192, set.Pixels.Length);
        Assert.Equal((byte)((63 + 2) % 17), set.Pixels[2 * 64 + 63]);

        using var data = ImageDataset.FromDigits("digits", path);
        Assert.Equal(new long[] { 1, 8, 8 }, data.SampleShape);
        Assert.Equal(7, data.ClassCount);
        Assert.Equal(-1f, data.Images[0, 0, 0, 0].item<float>());
        Assert.Equal(1f, data.Images[0, 0, 2, 0].item<float>()); // pixel 16 = 16/16 → 1
        Assert.Equal(2f * 8 / 16 - 1, data.Images[0, 0, 1, 0].item<float>(), 1e-6f);

        string bad = _folder.File("bad.csv");
        File.WriteAllText(bad, string.Join(',', Enumerable.Repeat("1", 64)) + ",3\n" + string.Join(',', Enumerable.Repeat("1", 10)) + "\n");
        var e = Assert.Throws<UdmException>(() => DigitsCsv.Read(bad, "digits"));
        Assert.Contains("line 2", e.Message);
        File.WriteAllText(bad, string.Join(',', Enumerable.Repeat("1", 63)) + ",17,3\n");
        Assert.Contains("\"17\"", Assert.Throws<UdmException>(() => DigitsCsv.Read(bad)).Message);
    }

    // 40 images of 1×4×4 whose every pixel encodes the label: value = label/4 − 1 for labels 0..7.
    private static ImageDataset Encoded()
    {
        var labels = torch.arange(40, dtype: ScalarType.Int64) % 8;
        var images = (labels.to(ScalarType.Float32) / 4 - 1).view(40, 1, 1, 1).expand(40, 1, 4, 4);
        return ImageDataset.FromTensors("encoded", images, labels, 8);
    }

    [Fact]
    public void LabeledSamplingReturnsTheLabelsOfTheDrawnImages()
    {
        using var scope = torch.NewDisposeScope();
        using var data = Encoded();
        var (x, y) = data.SampleLabeled(500, new Generator(3));
        Assert.Equal(new long[] { 500, 1, 4, 4 }, x.shape);
        Assert.Equal(new long[] { 500 }, y.shape);
        Assert.Equal(ScalarType.Int64, y.dtype);
        var decoded = ((x[.., 0, 2, 3] + 1) * 4).round().to(ScalarType.Int64);
        Assert.True(decoded.eq(y).all().item<bool>());
        Assert.Equal(8, torch.unique(y).Item1.shape[0]); // every class drawn at least once
        Assert.True(x.min().item<float>() >= -1f && x.max().item<float>() <= 1f);

        // Same generator seed, same batch; Sample draws the same images as SampleLabeled.
        var again = data.Sample(500, new Generator(3));
        Assert.True(again.equal(x).all().item<bool>());
    }

    [Fact]
    public void TakeSliceAndPerChannelMeanAreDeterministic()
    {
        using var scope = torch.NewDisposeScope();
        using var data = Encoded();
        using var first = data.Take(10);
        using var middle = data.Slice(8, 4);
        Assert.Equal(10, first.Count);
        Assert.Equal(new long[] { 0, 1, 2, 3, 4, 5, 6, 7, 0, 1 }, first.Labels.data<long>().ToArray());
        Assert.Equal(new long[] { 0, 1, 2, 3 }, middle.Labels.data<long>().ToArray());
        Assert.Equal(8, middle.ClassCount);
        Assert.Equal(40, data.Take(1000).Count);
        // Labels 0..7 equally often: mean of label/4 − 1 = 3.5/4 − 1.
        Assert.Equal(3.5 / 4 - 1, Assert.Single(data.PerChannelMean()), 1e-6);
        Assert.Throws<ArgumentOutOfRangeException>(() => data.Slice(38, 5));
    }

    [Fact]
    public void DatasetTensorsSurviveTheCreatorsDisposeScope()
    {
        ImageDataset data;
        using (var scope = torch.NewDisposeScope()) data = Encoded();
        using (data)
        {
            Assert.Equal(-1f, data.Images.min().item<float>());
            Assert.Equal(5 * 28, data.Labels.sum().item<long>());
        }
    }
}
