using System.Globalization;
using System.Text;
using TorchSharp;
using TorchSharp.Modules;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Metrics;

/// <summary>
/// A small LeNet-style classifier of images [N, C, H, W] in [−1, 1]: conv 3×3 (16) → ReLU →
/// max-pool 2 → conv 3×3 (32) → ReLU → max-pool 2 → linear (128) → ReLU → linear (classes).
/// The 128 post-ReLU activations are the features of a classifier FID
/// (<see cref="ImageMetrics.FrechetDistance"/>), its predictions feed class coverage.
/// </summary>
public sealed class ImageClassifier : nn.Module<Tensor, Tensor>
{
    /// <summary>The width of <see cref="Features"/>.</summary>
    public const int FeatureWidth = 128;

    private const string Magic = "UDM-IMAGE-CLASSIFIER 1";
    private const int Chunk = 500;
    private static readonly object SeedLock = new();

    private readonly ChannelPaddedConv2d conv1;
    private readonly ChannelPaddedConv2d conv2;
    private readonly Linear fc1;
    private readonly Linear fc2;

    /// <summary>An untrained classifier of images with the given shape into <paramref name="classCount"/> classes.</summary>
    public ImageClassifier(long channels, long height, long width, int classCount) : base(nameof(ImageClassifier))
    {
        if (channels < 1 || height < 4 || width < 4) throw new ArgumentException($"images must have at least 1 channel and 4×4 pixels, not {channels}×{height}×{width}");
        ArgumentOutOfRangeException.ThrowIfLessThan(classCount, 2);
        Channels = channels;
        Height = height;
        Width = width;
        ClassCount = classCount;
        conv1 = new ChannelPaddedConv2d(channels, 16, 3, padding: 1);
        conv2 = new ChannelPaddedConv2d(16, 32, 3, padding: 1);
        fc1 = nn.Linear(32 * (height / 4) * (width / 4), FeatureWidth);
        fc2 = nn.Linear(FeatureWidth, classCount);
        RegisterComponents();
    }

    /// <summary>The number of input channels.</summary>
    public long Channels { get; }

    /// <summary>The input height.</summary>
    public long Height { get; }

    /// <summary>The input width.</summary>
    public long Width { get; }

    /// <summary>The number of classes.</summary>
    public int ClassCount { get; }

    private Tensor Penultimate(Tensor x)
    {
        var h = nn.functional.max_pool2d(nn.functional.relu(conv1.forward(x)), 2);
        h = nn.functional.max_pool2d(nn.functional.relu(conv2.forward(h)), 2);
        return nn.functional.relu(fc1.forward(h.flatten(1)));
    }

    /// <summary>Class logits [N, classes] of images [N, C, H, W].</summary>
    public override Tensor forward(Tensor input) => fc2.forward(Penultimate(input));

    /// <summary>The 128 penultimate (post-ReLU) activations [N, 128] of images [N, C, H, W] in [−1, 1],
    /// on the CPU; evaluated without gradients in chunks of 500.</summary>
    public Tensor Features(Tensor x) => Batched(x, Penultimate);

    /// <summary>The predicted class (int64 [N]) of each image [N, C, H, W] in [−1, 1], on the CPU.</summary>
    public Tensor Predict(Tensor x) => Batched(x, t => forward(t).argmax(1));

    /// <summary>The share (0..1) of <paramref name="test"/>'s images whose class is predicted correctly.</summary>
    public double Accuracy(ImageDataset test)
    {
        ArgumentNullException.ThrowIfNull(test);
        using var scope = torch.NewDisposeScope();
        var predicted = Predict(test.Images);
        return predicted.eq(test.Labels).to(ScalarType.Float64).mean().item<double>();
    }

    private Tensor Batched(Tensor x, Func<Tensor, Tensor> f)
    {
        ArgumentNullException.ThrowIfNull(x);
        if (x.dim() != 4 || x.shape[1] != Channels || x.shape[2] != Height || x.shape[3] != Width)
            throw new ArgumentException($"images must be [N, {Channels}, {Height}, {Width}], not [{string.Join(", ", x.shape)}]", nameof(x));
        bool wasTraining = training;
        eval();
        try
        {
            using var noGrad = torch.no_grad();
            var device = fc2.weight!.device;
            var parts = new List<Tensor>();
            for (long start = 0; start < x.shape[0]; start += Chunk)
            {
                using var scope = torch.NewDisposeScope();
                var part = x.narrow(0, start, Math.Min(Chunk, x.shape[0] - start)).to(ScalarType.Float32, device);
                parts.Add(f(part).cpu().MoveToOuterDisposeScope());
            }
            if (parts.Count == 0) return f(x.to(ScalarType.Float32, device)).cpu();
            var result = torch.cat(parts, 0);
            foreach (var p in parts) p.Dispose();
            return result;
        }
        finally
        {
            train(wasTraining);
        }
    }

    /// <summary>
    /// Returns the classifier cached in <paramref name="cacheFile"/> when the file was trained on a
    /// data set of the same name, size, image shape, class count, mean pixel and mean label with the
    /// same seed, steps and batch; otherwise trains one (Adam, learning rate 1e-3, <paramref name="steps"/> batches of
    /// <paramref name="batch"/> drawn with replacement; weights initialised from the global torch
    /// RNG seeded with <paramref name="seed"/> under a lock, batches from a Generator seeded with
    /// seed + 1) and saves it atomically. A stale cache (different data or settings) is retrained
    /// and overwritten; an unreadable or corrupt cache gives a <see cref="UdmException"/> that
    /// says to delete it, so that a broken file is never silently replaced.
    /// </summary>
    public static ImageClassifier TrainOrLoad(ImageDataset train, string cacheFile, long seed = 0, int steps = 1500, int batch = 128,
        IProgress<(int Step, int Total, float Loss)>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentException.ThrowIfNullOrEmpty(cacheFile);
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(batch, 1);
        string header = HeaderFor(train, seed, steps, batch);
        if (File.Exists(cacheFile))
        {
            var loaded = TryLoad(train, cacheFile, header);
            if (loaded is not null) return loaded;
        }
        var model = Train(train, seed, steps, batch, progress);
        model.SaveTo(cacheFile, header);
        return model;
    }

    private static string HeaderFor(ImageDataset data, long seed, int steps, int batch)
    {
        var s = data.SampleShape;
        // A cheap fingerprint of the contents, so that another set under the same name is noticed.
        double pixelMean, labelMean;
        using (var scope = torch.NewDisposeScope())
        {
            pixelMean = data.Images.to(ScalarType.Float64).mean().item<double>();
            labelMean = data.Labels.to(ScalarType.Float64).mean().item<double>();
        }
        return string.Create(CultureInfo.InvariantCulture,
            $"data={data.Name.Replace('\n', ' ')};count={data.Count};shape={s[0]}x{s[1]}x{s[2]};classes={data.ClassCount};pixels={pixelMean:F6};labels={labelMean:F6};seed={seed};steps={steps};batch={batch}");
    }

    private static ImageClassifier Train(ImageDataset data, long seed, int steps, int batch, IProgress<(int Step, int Total, float Loss)>? progress)
    {
        var s = data.SampleShape;
        ImageClassifier model;
        lock (SeedLock)
        {
            torch.manual_seed(seed);
            model = new ImageClassifier(s[0], s[1], s[2], data.ClassCount);
        }
        model.train();
        using var optimizer = optim.Adam(model.parameters(), lr: 1e-3);
        using var generator = new Generator(unchecked((ulong)seed + 1));
        int report = Math.Max(1, steps / 100);
        for (int step = 1; step <= steps; step++)
        {
            using var scope = torch.NewDisposeScope();
            var (x, y) = data.SampleLabeled(batch, generator);
            optimizer.zero_grad();
            var loss = nn.functional.cross_entropy(model.forward(x), y);
            loss.backward();
            optimizer.step();
            if (progress is not null && (step % report == 0 || step == steps))
                progress.Report((step, steps, loss.item<float>()));
        }
        model.eval();
        return model;
    }

    private void SaveTo(string path, string header) =>
        AtomicFile.Write(path, stream =>
        {
            using var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
            writer.Write(Magic);
            writer.Write(header);
            save(writer);
        });

    // The cached model, or null when the cache was made for other data or settings.
    private static ImageClassifier? TryLoad(ImageDataset data, string path, string header)
    {
        string advice = $"classifier cache {path} is corrupt or unreadable: delete it and run again to retrain.";
        try
        {
            using var stream = File.OpenRead(path);
            using var reader = new BinaryReader(stream, Encoding.UTF8);
            if (reader.ReadString() != Magic) throw new UdmException(advice);
            if (reader.ReadString() != header) return null;
            var s = data.SampleShape;
            var model = new ImageClassifier(s[0], s[1], s[2], data.ClassCount);
            model.load(reader, strict: true);
            if (stream.Position != stream.Length) throw new UdmException(advice);
            model.eval();
            return model;
        }
        catch (UdmException) { throw; }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new UdmException(advice, e);
        }
    }
}
