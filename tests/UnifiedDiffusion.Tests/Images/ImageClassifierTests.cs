using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Metrics;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Images;

public sealed class ImageClassifierTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    // 16×16 noisy dark images with one bright 8×8 quadrant; the quadrant is the class (4 classes).
    private static ImageDataset Quadrants(string name, int n, ulong seed)
    {
        using var scope = torch.NewDisposeScope();
        var g = new Generator(seed);
        var labels = torch.randint(0, 4, [n], dtype: ScalarType.Int64, generator: g);
        var images = torch.randn([n, 1, 16, 16], generator: g) * 0.3 - 0.6;
        var rows = torch.arange(16).view(1, 16, 1);
        var cols = torch.arange(16).view(1, 1, 16);
        var top = (labels / 2).view(n, 1, 1);
        var left = (labels % 2).view(n, 1, 1);
        var inQuadrant = (rows / 8).eq(top).logical_and((cols / 8).eq(left)).unsqueeze(1);
        images = torch.where(inQuadrant, images + 1.2, images).clamp(-1, 1);
        return ImageDataset.FromTensors(name, images, labels, 4);
    }

    [Fact]
    public void LearnsQuadrantClassesAndReloadsFromItsCache()
    {
        using var scope = torch.NewDisposeScope();
        using var train = Quadrants("quadrants", 2000, 1);
        using var test = Quadrants("quadrants-test", 400, 2);
        string cache = _folder.File("cache/classifier.bin");
        var reports = new List<(int Step, int Total, float Loss)>();
        var model = ImageClassifier.TrainOrLoad(train, cache, seed: 3, steps: 120, batch: 32, progress: new SyncProgress(reports));

        double accuracy = model.Accuracy(test);
        Assert.True(accuracy > 0.95, $"accuracy {accuracy}");
        Assert.True(File.Exists(cache));
        Assert.Equal(120, reports[^1].Step);
        Assert.True(reports[^1].Loss < reports[0].Loss);

        var features = model.Features(test.Images);
        Assert.Equal(new long[] { 400, ImageClassifier.FeatureWidth }, features.shape);
        Assert.True(features.min().item<float>() >= 0f); // post-ReLU
        var predicted = model.Predict(test.Images);
        Assert.Equal(new long[] { 400 }, predicted.shape);
        Assert.Equal(ScalarType.Int64, predicted.dtype);

        // Chunking (500 per forward) does not change the result.
        var big = test.Images.repeat(2, 1, 1, 1);
        Assert.True(model.Predict(big).equal(predicted.repeat(2)).all().item<bool>());

        var stamp = File.GetLastWriteTimeUtc(cache);
        var reloaded = ImageClassifier.TrainOrLoad(train, cache, seed: 3, steps: 120, batch: 32);
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(cache));
        Assert.True(reloaded.Predict(test.Images).equal(predicted).all().item<bool>());
        Assert.True(reloaded.Features(test.Images).equal(features).all().item<bool>());
    }

    [Fact]
    public void StaleCacheIsRetrainedAndCorruptCacheIsAUserError()
    {
        using var scope = torch.NewDisposeScope();
        using var train = Quadrants("quadrants", 300, 4);
        string cache = _folder.File("classifier.bin");
        ImageClassifier.TrainOrLoad(train, cache, steps: 5, batch: 8);
        var valid = File.ReadAllBytes(cache);

        // Other settings: the file is replaced by a fresh training.
        var reports = new List<(int Step, int Total, float Loss)>();
        ImageClassifier.TrainOrLoad(train, cache, steps: 6, batch: 8, progress: new SyncProgress(reports));
        Assert.Equal(6, reports[^1].Step);
        Assert.NotEqual(valid, File.ReadAllBytes(cache));

        // Other images under the same name: retrained too.
        using var other = Quadrants("quadrants", 300, 5);
        reports.Clear();
        ImageClassifier.TrainOrLoad(other, cache, steps: 6, batch: 8, progress: new SyncProgress(reports));
        Assert.Equal(6, reports[^1].Step);

        File.WriteAllBytes(cache, valid[..(valid.Length * 2 / 3)]);
        var e = Assert.Throws<UdmException>(() => ImageClassifier.TrainOrLoad(train, cache, steps: 5, batch: 8));
        Assert.Contains("delete it", e.Message);

        File.WriteAllText(cache, "garbage that is not a classifier");
        Assert.Throws<UdmException>(() => ImageClassifier.TrainOrLoad(train, cache, steps: 5, batch: 8));
    }

    [Fact]
    public void TrainedAndLoadedClassifiersSurviveTheCallersDisposeScope()
    {
        using var train = Quadrants("quadrants", 100, 6);
        string cache = _folder.File("scoped.bin");
        ImageClassifier trained, loaded;
        using (var scope = torch.NewDisposeScope()) trained = ImageClassifier.TrainOrLoad(train, cache, steps: 3, batch: 8);
        using (var scope = torch.NewDisposeScope()) loaded = ImageClassifier.TrainOrLoad(train, cache, steps: 3, batch: 8);
        using var outer = torch.NewDisposeScope();
        Assert.True(trained.Predict(train.Images).equal(loaded.Predict(train.Images)).all().item<bool>());
    }

    // Progress<T> posts to the thread pool; the test needs the reports synchronously.
    private sealed class SyncProgress(List<(int Step, int Total, float Loss)> sink) : IProgress<(int Step, int Total, float Loss)>
    {
        public void Report((int Step, int Total, float Loss) value) => sink.Add(value);
    }
}
