using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Data;

/// <summary>Grayscale images as read from an IDX file: <paramref name="Count"/> images of
/// <paramref name="Rows"/>×<paramref name="Columns"/> unsigned bytes, row-major, one after another.</summary>
/// <param name="Pixels">Count·Rows·Columns bytes, 0 = black, 255 = white.</param>
/// <param name="Count">The number of images.</param>
/// <param name="Rows">The height of one image.</param>
/// <param name="Columns">The width of one image.</param>
public sealed record IdxImages(byte[] Pixels, int Count, int Rows, int Columns);

/// <summary>
/// The IDX format of MNIST and Fashion-MNIST: a big-endian magic number (0x00000803 for images,
/// 0x00000801 for labels), the dimensions as big-endian int32, then unsigned bytes. Files that
/// start with the gzip signature (1f 8b) are unpacked transparently.
/// </summary>
public static class Idx
{
    /// <summary>The magic number of an IDX file of unsigned-byte images (3 dimensions).</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>The magic number of an IDX file of unsigned-byte labels (1 dimension).</summary>
    public const int LabelsMagic = 0x00000801;

    // Generous limits that still catch a garbage header before it asks for gigabytes.
    private const int MaxSide = 4096;
    private const long MaxBytes = int.MaxValue - 1024;

    /// <summary>Reads an IDX image file (optionally gzipped). <paramref name="dataName"/>, when given,
    /// names the data set in error messages so that they can say how to fetch it again.</summary>
    public static IdxImages ReadImages(string path, string? dataName = null)
    {
        var bytes = ReadMaybeGzip(path, dataName);
        if (bytes.Length < 16 || BinaryPrimitives.ReadInt32BigEndian(bytes) != ImagesMagic)
            throw new UdmException($"{path} is not an IDX image file (its magic number is not 0x00000803): {FetchAdvice(dataName)}");
        int count = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4));
        int rows = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(8));
        int columns = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(12));
        if (count <= 0 || rows <= 0 || columns <= 0 || rows > MaxSide || columns > MaxSide || (long)count * rows * columns > MaxBytes)
            throw new UdmException($"{path} has an absurd IDX header ({count} images of {rows}×{columns}): {FetchAdvice(dataName)}");
        long expected = 16 + (long)count * rows * columns;
        if (bytes.Length < expected)
            throw new UdmException($"{path} is truncated ({bytes.Length:N0} bytes, the header promises {expected:N0}): {FetchAdvice(dataName)}");
        return new IdxImages(bytes.AsSpan(16, (int)(expected - 16)).ToArray(), count, rows, columns);
    }

    /// <summary>Reads an IDX label file (optionally gzipped): one byte per item.</summary>
    public static byte[] ReadLabels(string path, string? dataName = null)
    {
        var bytes = ReadMaybeGzip(path, dataName);
        if (bytes.Length < 8 || BinaryPrimitives.ReadInt32BigEndian(bytes) != LabelsMagic)
            throw new UdmException($"{path} is not an IDX label file (its magic number is not 0x00000801): {FetchAdvice(dataName)}");
        int count = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(4));
        if (count <= 0 || count > MaxBytes)
            throw new UdmException($"{path} has an absurd IDX header ({count} labels): {FetchAdvice(dataName)}");
        long expected = 8L + count;
        if (bytes.Length < expected)
            throw new UdmException($"{path} is truncated ({bytes.Length:N0} bytes, the header promises {expected:N0}): {FetchAdvice(dataName)}");
        return bytes.AsSpan(8, count).ToArray();
    }

    /// <summary>Writes images as an IDX file, atomically; gzipped when <paramref name="gzip"/> is true.</summary>
    public static void WriteImages(string path, IdxImages images, bool gzip = false)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.Pixels.Length != (long)images.Count * images.Rows * images.Columns)
            throw new ArgumentException("the pixel count does not match Count·Rows·Columns", nameof(images));
        var header = new byte[16];
        BinaryPrimitives.WriteInt32BigEndian(header, ImagesMagic);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), images.Count);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(8), images.Rows);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(12), images.Columns);
        Write(path, header, images.Pixels, gzip);
    }

    /// <summary>Writes labels as an IDX file, atomically; gzipped when <paramref name="gzip"/> is true.</summary>
    public static void WriteLabels(string path, byte[] labels, bool gzip = false)
    {
        ArgumentNullException.ThrowIfNull(labels);
        var header = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(header, LabelsMagic);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), labels.Length);
        Write(path, header, labels, gzip);
    }

    private static void Write(string path, byte[] header, byte[] body, bool gzip) =>
        AtomicFile.Write(path, stream =>
        {
            if (gzip)
            {
                using var zip = new GZipStream(stream, CompressionLevel.Fastest, leaveOpen: true);
                zip.Write(header);
                zip.Write(body);
            }
            else
            {
                stream.Write(header);
                stream.Write(body);
            }
        });

    /// <summary>What to do about a bad file: fetch a cached set again; one's own idx: folder can only be fixed by its owner.</summary>
    internal static string FetchAdvice(string? dataName) => dataName is null || dataName.StartsWith("idx:", StringComparison.Ordinal)
        ? "replace it with a valid IDX file (the MNIST layout)."
        : $"fetch it again with `udm data get {dataName} --force`.";

    /// <summary>All bytes of a file, gunzipped when it starts with 1f 8b.</summary>
    internal static byte[] ReadMaybeGzip(string path, string? dataName)
    {
        if (!File.Exists(path))
            throw new UdmException($"{path} does not exist: {(dataName is null || dataName.StartsWith("idx:", StringComparison.Ordinal) ? "check the path" : $"fetch the data with `udm data get {dataName} --force`")}.");
        byte[] raw;
        try { raw = File.ReadAllBytes(path); }
        catch (IOException e) { throw new UdmException($"{path} cannot be read ({e.Message}): check its permissions.", e); }
        catch (UnauthorizedAccessException e) { throw new UdmException($"{path} cannot be read ({e.Message}): check its permissions.", e); }
        if (raw.Length < 2 || raw[0] != 0x1f || raw[1] != 0x8b) return raw;
        try
        {
            using var zip = new GZipStream(new MemoryStream(raw), CompressionMode.Decompress);
            using var result = new MemoryStream(raw.Length * 4);
            zip.CopyTo(result);
            return result.ToArray();
        }
        catch (InvalidDataException e)
        {
            throw new UdmException($"{path} is a truncated or corrupt gzip file ({e.Message.TrimEnd('.')}): {FetchAdvice(dataName)}", e);
        }
    }
}

/// <summary>The 8×8 digits of scikit-learn (UCI optdigits): pixels 0–16, row-major, and labels 0–9.</summary>
/// <param name="Pixels">Count·64 values in 0..16.</param>
/// <param name="Labels">Count labels in 0..9.</param>
public sealed record DigitsSet(byte[] Pixels, byte[] Labels)
{
    /// <summary>The side of one image.</summary>
    public const int Side = 8;

    /// <summary>The largest pixel value (white).</summary>
    public const int MaxValue = 16;

    /// <summary>The number of images.</summary>
    public int Count => Labels.Length;
}

/// <summary>Reads scikit-learn's digits.csv.gz: one image per line, 64 pixel values (0–16) then the label.</summary>
public static class DigitsCsv
{
    /// <summary>
    /// Reads the file (gzipped or plain). Values may be integers or floats ("0", "0.0",
    /// "0.000000000000000000e+00"); a first line that is not numeric is taken as a header; blank
    /// lines are skipped.
    /// </summary>
    public static DigitsSet Read(string path, string? dataName = null)
    {
        var text = System.Text.Encoding.UTF8.GetString(Idx.ReadMaybeGzip(path, dataName));
        var pixels = new List<byte>(text.Length / 8);
        var labels = new List<byte>();
        const int fields = DigitsSet.Side * DigitsSet.Side + 1;
        using var reader = new StringReader(text);
        int lineNumber = 0;
        bool dataSeen = false;
        for (string? line = reader.ReadLine(); line is not null; line = reader.ReadLine())
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var parts = line.Split(',');
            if (!dataSeen && !double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out _))
            {
                dataSeen = true; // a header line
                continue;
            }
            dataSeen = true;
            if (parts.Length != fields)
                throw new UdmException($"{path} line {lineNumber} has {parts.Length} values instead of {fields} (64 pixels and a label): {Idx.FetchAdvice(dataName)}");
            for (int i = 0; i < fields; i++)
            {
                int max = i < fields - 1 ? DigitsSet.MaxValue : 9;
                if (!double.TryParse(parts[i], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) || v < 0 || v > max || v != Math.Floor(v))
                    throw new UdmException($"{path} line {lineNumber}, value {i + 1} is \"{parts[i].Trim()}\", not an integer in 0..{max}: {Idx.FetchAdvice(dataName)}");
                if (i < fields - 1) pixels.Add((byte)v);
                else labels.Add((byte)v);
            }
        }
        if (labels.Count == 0)
            throw new UdmException($"{path} holds no rows of digits: {Idx.FetchAdvice(dataName)}");
        return new DigitsSet(pixels.ToArray(), labels.ToArray());
    }
}

/// <summary>
/// A labeled image set held in memory: float32 images [N, C, H, W] scaled to [−1, 1] and int64
/// labels [N] in 0..<see cref="ClassCount"/>−1, on the CPU. The data set owns its tensors; dispose
/// it to free them.
/// </summary>
public sealed class ImageDataset : ILabeledDataSource, IDisposable
{
    private readonly string? _withoutImages;

    private ImageDataset(string name, Tensor images, Tensor labels, int classCount, string? withoutImages = null)
    {
        Name = name;
        Images = images.DetachFromDisposeScope();
        Labels = labels.DetachFromDisposeScope();
        ClassCount = classCount;
        _withoutImages = withoutImages;
    }

    /// <summary>
    /// A stand-in that knows the images' shape [C, H, W] and class count but holds none: asked for
    /// images (a draw, a slice), it throws <paramref name="advice"/>, which says how to fetch them.
    /// </summary>
    public static ImageDataset WithoutImages(string name, long[] shape, int classCount, string advice) =>
        new(name, torch.zeros([0, shape[0], shape[1], shape[2]]), torch.zeros([0], ScalarType.Int64), classCount, advice);

    private void RequireImages()
    {
        if (_withoutImages is not null) throw new UdmException(_withoutImages) { Subject = "data" };
    }

    /// <inheritdoc/>
    public string Name { get; }

    /// <inheritdoc/>
    public int ClassCount { get; }

    /// <summary>All images, float32 [N, C, H, W] in [−1, 1] (owned by the data set: do not dispose).</summary>
    public Tensor Images { get; }

    /// <summary>All labels, int64 [N] (owned by the data set: do not dispose).</summary>
    public Tensor Labels { get; }

    /// <summary>The number of images N.</summary>
    public int Count => (int)Images.shape[0];

    /// <summary>[C, H, W].</summary>
    public long[] SampleShape => [Images.shape[1], Images.shape[2], Images.shape[3]];

    /// <summary>Reads an IDX image file and its IDX label file (each optionally gzipped). Bytes 0..255
    /// map linearly to [−1, 1]; the class count is the largest label + 1.</summary>
    public static ImageDataset FromIdx(string name, string imagesPath, string labelsPath)
    {
        var images = Idx.ReadImages(imagesPath, name);
        var labels = Idx.ReadLabels(labelsPath, name);
        if (labels.Length != images.Count)
            throw new UdmException($"{imagesPath} holds {images.Count} images but {labelsPath} holds {labels.Length} labels: {Idx.FetchAdvice(name)}");
        return FromBytes(name, images.Pixels, labels, images.Rows, images.Columns, 255.0);
    }

    /// <summary>Reads scikit-learn's digits.csv(.gz): 8×8 images whose values 0..16 map linearly to [−1, 1].</summary>
    public static ImageDataset FromDigits(string name, string csvPath)
    {
        var digits = DigitsCsv.Read(csvPath, name);
        return FromBytes(name, digits.Pixels, digits.Labels, DigitsSet.Side, DigitsSet.Side, DigitsSet.MaxValue);
    }

    /// <summary>A data set of copies of <paramref name="images"/> [N, C, H, W] (values expected in
    /// [−1, 1]) and <paramref name="labels"/> [N] (integers in 0..classCount−1).</summary>
    public static ImageDataset FromTensors(string name, Tensor images, Tensor labels, int classCount)
    {
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        if (images.dim() != 4) throw new ArgumentException($"images must be [N, C, H, W], not [{string.Join(", ", images.shape)}]", nameof(images));
        if (labels.dim() != 1 || labels.shape[0] != images.shape[0]) throw new ArgumentException("labels must be [N] with the images' N", nameof(labels));
        if (classCount < 1) throw new ArgumentOutOfRangeException(nameof(classCount), "at least one class is needed");
        using var scope = torch.NewDisposeScope();
        var x = images.detach().to(ScalarType.Float32, torch.CPU).clone().contiguous();
        var y = labels.detach().to(ScalarType.Int64, torch.CPU).clone().contiguous();
        if (y.numel() > 0 && (y.min().item<long>() < 0 || y.max().item<long>() >= classCount))
            throw new ArgumentException($"labels must lie in 0..{classCount - 1}", nameof(labels));
        return new ImageDataset(name, x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope(), classCount);
    }

    private static ImageDataset FromBytes(string name, byte[] pixels, byte[] labels, int rows, int columns, double maxValue)
    {
        using var scope = torch.NewDisposeScope();
        var raw = torch.tensor(pixels, [labels.Length, 1, rows, columns], dtype: ScalarType.Byte);
        var x = raw.to(ScalarType.Float32).mul_(2.0 / maxValue).sub_(1.0);
        var y = torch.tensor(labels, dtype: ScalarType.Byte).to(ScalarType.Int64);
        int classCount = labels.Length == 0 ? 1 : labels.Max() + 1;
        return new ImageDataset(name, x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope(), classCount);
    }

    /// <summary>Draws <paramref name="count"/> images uniformly with replacement.</summary>
    public Tensor Sample(int count, Generator generator, Device? device = null) =>
        SampleLabeled(count, generator, device).Samples;

    /// <summary>Draws <paramref name="count"/> images uniformly with replacement, with their labels.</summary>
    public (Tensor Samples, Tensor Labels) SampleLabeled(int count, Generator generator, Device? device = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        RequireImages();
        using var scope = torch.NewDisposeScope();
        var index = torch.randint(0, Count, [count], dtype: ScalarType.Int64, generator: generator);
        var x = Images.index_select(0, index).to(device ?? torch.CPU);
        var y = Labels.index_select(0, index).to(device ?? torch.CPU);
        return (x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope());
    }

    /// <summary>The first <paramref name="n"/> items (all of them when n ≥ N), as a new data set of copies.</summary>
    public ImageDataset Take(int n) => Slice(0, Math.Min(n, Count));

    /// <summary>Items start..start+count−1 as a new data set of copies, with the same class count.</summary>
    public ImageDataset Slice(int start, int count)
    {
        RequireImages();
        if (start < 0 || count < 0 || start + count > Count)
            throw new ArgumentOutOfRangeException(nameof(count), $"slice {start}..{start + count} is outside 0..{Count}");
        using var scope = torch.NewDisposeScope();
        var x = Images.narrow(0, start, count).clone();
        var y = Labels.narrow(0, start, count).clone();
        return new ImageDataset(Name, x.MoveToOuterDisposeScope(), y.MoveToOuterDisposeScope(), ClassCount);
    }

    /// <summary>The mean pixel value of each channel over the whole set, in [−1, 1].</summary>
    public double[] PerChannelMean()
    {
        using var scope = torch.NewDisposeScope();
        return Images.to(ScalarType.Float64).mean([0, 2, 3]).data<double>().ToArray();
    }

    /// <summary>Frees the image and label tensors.</summary>
    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}
