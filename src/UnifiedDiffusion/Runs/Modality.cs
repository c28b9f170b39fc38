using System.Globalization;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Output;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// What depends on the data rather than on the family: the denoiser network a continuous family
/// uses, how samples are written and judged, which part of a sample can be held fixed, how many
/// samples run at once, and the held-out data of likelihood bounds. Families compose with one.
/// </summary>
public abstract class Modality
{
    private protected Modality(OpenedData data, Device device)
    {
        Data = data;
        Device = device;
    }

    /// <summary>The training and held-out data.</summary>
    public OpenedData Data { get; }

    /// <summary>The device samples live on.</summary>
    public Device Device { get; }

    /// <summary>What a sample is: points, images or text.</summary>
    public abstract string Name { get; }

    /// <summary>The default file extension of <see cref="Write"/>.</summary>
    public abstract string SampleExtension { get; }

    /// <summary>
    /// The largest batch sampled at once (<see cref="SamplingOptions.MaxBatch"/>): the memory budget
    /// over a sample's working memory in the network, within [16, <see cref="MaxSamplingBatch"/>].
    /// </summary>
    public int SamplingBatch => (int)Math.Clamp(MemoryBudgetBytes / Math.Max(1, SampleWorkingBytes), 16, MaxSamplingBatch);

    /// <summary>An estimate of one sample's working memory while the network runs, in bytes.</summary>
    protected abstract long SampleWorkingBytes { get; }

    /// <summary>The batch beyond which sampling gains no speed.</summary>
    protected virtual int MaxSamplingBatch => 65_536;

    /// <summary>Memory that sampling may use: a quarter of what the machine has available, at most 2 GiB.</summary>
    public static long MemoryBudgetBytes => Math.Min(2L << 30, Platform.AvailableMemoryBytes() / 4);

    /// <summary>How many samples a trajectory file follows.</summary>
    public virtual int TrajectoryRows => 4;

    /// <summary>
    /// The most steps <see cref="WriteTrajectory"/> shows; a longer trajectory is subsampled evenly,
    /// keeping its last step (<see cref="TrajectoryRecorder.Spread"/>).
    /// </summary>
    public virtual int TrajectoryStepsShown => int.MaxValue;

    /// <summary>The file extension of <see cref="WriteTrajectory"/>: .png, or .txt for text.</summary>
    public virtual string TrajectoryExtension => ".png";

    /// <summary>Writes a recorded trajectory for a person to look at: every step's x_t and estimate of x_0.</summary>
    public abstract void WriteTrajectory(string path, TrajectoryRecorder trajectory, string title);

    /// <summary>
    /// Checks an output path and count before any work: the extension, and the most a file of that
    /// kind can show (a PNG grid or scatter plot). A one-line error says what fits.
    /// </summary>
    public abstract void CheckOutput(string path, int count);

    /// <summary>True for 8-bit data scaled to [−1, 1] (pixels), whose likelihood uses the 256-bin discretized decoder.</summary>
    public virtual bool EightBitLevels => false;

    /// <summary>The modality of a data set.</summary>
    public static Modality For(OpenedData data, Device device) => data.Kind switch
    {
        DataKind.Vectors => new PointModality(data, device),
        DataKind.Images => new ImageModality(data, device),
        _ => new TextModality(data, device),
    };

    /// <summary>The denoiser network (x_t, t) → output of a continuous family: an MLP for points, a UNet for images.</summary>
    public virtual nn.Module<Tensor, Tensor, Tensor> Denoiser(ExperimentConfig config) =>
        throw new UdmException($"the {config.Family} family works on points or images, not on the {Name} set {Data.Train.Name}; use the mask or edit family.") { Subject = "family" };

    /// <summary>Writes samples for a person to look at (a PNG, a CSV or a text file).</summary>
    public abstract void Write(string path, Tensor samples, string title);

    /// <summary>Metrics of generated samples against the data (snake_case names, as in --json).</summary>
    public abstract Dictionary<string, double> Judge(Tensor samples, long seed);

    /// <summary>
    /// The fixed part that keeps the pixels of <paramref name="imagePath"/> where the mask PNG is
    /// white (inpainting); only images have pixels.
    /// </summary>
    public virtual FixedPart Inpainting(string imagePath, string maskPath, int count) =>
        throw new UdmException($"inpainting keeps pixels of an image; {Data.Train.Name} holds {Name}, not images.") { Subject = "inpaint" };

    /// <summary>
    /// Held-out data for likelihood bounds: the first <paramref name="count"/> held-out samples, or the
    /// generator itself for generated data. Dispose it if it is <see cref="IDisposable"/>.
    /// </summary>
    public abstract IDataSource HeldOutData(int count);

    /// <summary>
    /// <paramref name="count"/> real samples that the metrics do not compare against, for the
    /// reference (<c>data</c>) row of an evaluation: training samples drawn with <paramref name="seed"/>
    /// (fresh draws of generated data; for images, the metrics' reference is the held-out set).
    /// </summary>
    public virtual Tensor ReferenceSamples(int count, long seed) => Data.Train.Sample(count, new Generator((ulong)seed), Device);
}

/// <summary>Low-dimensional points (the toy sets): an MLP, scatter plots or CSV, sliced W2 and the mixture's log-density.</summary>
public sealed class PointModality : Modality
{
    internal PointModality(OpenedData data, Device device) : base(data, device) { }

    /// <inheritdoc />
    public override string Name => "points";

    /// <inheritdoc />
    public override string SampleExtension => ".png";

    /// <inheritdoc />
    public override nn.Module<Tensor, Tensor, Tensor> Denoiser(ExperimentConfig config) => new MlpDenoiser((int)Data.Train.SampleShape[0], config.Network);

    /// <inheritdoc />
    /// <remarks>Points are followed as a cloud: the first 2,000.</remarks>
    public override int TrajectoryRows => 2000;

    /// <inheritdoc />
    public override int TrajectoryStepsShown => 8;

    /// <inheritdoc />
    /// <remarks>A strip of scatter plots of x_t at up to 8 steps, then the samples.</remarks>
    public override void WriteTrajectory(string path, TrajectoryRecorder trajectory, string title)
    {
        if (!Path.GetExtension(path).Equals(".png", StringComparison.OrdinalIgnoreCase))
            throw new UdmException($"{path}: a points trajectory is written as a .png strip of scatter plots.") { Subject = "trajectory" };
        var panels = trajectory.Spread(TrajectoryStepsShown).Select(s => ($"x_t, t = {s.T}", s.Xt)).ToList();
        if (trajectory.Final is { } final) panels.Add(("x_0 (samples)", final));
        Plots.ScatterGrid(path, panels, panelSize: 300, columns: panels.Count);
    }

    /// <summary>The most points a scatter plot shows.</summary>
    public const int MaxScatterPoints = 100_000;

    /// <inheritdoc />
    /// <remarks>The toy MLP's activations: about 24 float32 vectors of its width (256) per point.</remarks>
    protected override long SampleWorkingBytes => 24L * 256 * sizeof(float);

    /// <inheritdoc />
    public override void CheckOutput(string path, int count)
    {
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (extension is not (".csv" or ".png"))
            throw new UdmException($"{path}: points are written as .png or .csv (a scatter plot, or one point per row).") { Subject = "out" };
        if (extension == ".png" && count > MaxScatterPoints)
            throw new UdmException($"a scatter plot shows at most {MaxScatterPoints:N0} points, not {count:N0}; write a .csv for more, or use --count {MaxScatterPoints} or less.") { Subject = "count" };
    }

    /// <inheritdoc />
    /// <remarks>.png: a scatter plot; .csv: one point per row, streamed to disk in chunks.</remarks>
    public override void Write(string path, Tensor samples, string title)
    {
        CheckOutput(path, (int)samples.shape[0]);
        if (Path.GetExtension(path).Equals(".png", StringComparison.OrdinalIgnoreCase))
        {
            Plots.ScatterGrid(path, [(title, samples)]);
            return;
        }
        const int rowsPerChunk = 65_536;
        int columns = (int)samples.shape[1];
        AtomicFile.Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, leaveOpen: true);
            for (long start = 0; start < samples.shape[0]; start += rowsPerChunk)
            {
                using var chunk = samples.narrow(0, start, Math.Min(rowsPerChunk, samples.shape[0] - start)).to(ScalarType.Float64).cpu();
                var values = chunk.data<double>().ToArray();
                for (int i = 0; i < values.Length; i++)
                {
                    writer.Write(values[i].ToString("R", CultureInfo.InvariantCulture));
                    writer.Write((i + 1) % columns == 0 ? '\n' : ',');
                }
            }
        });
    }

    /// <inheritdoc />
    public override Dictionary<string, double> Judge(Tensor samples, long seed)
    {
        var (w2, logDensity) = Evaluation.Measure(samples, Data.Train, seed);
        var metrics = new Dictionary<string, double> { ["sliced_w2"] = w2 };
        if (logDensity is { } l) metrics["log_density"] = l;
        return metrics;
    }

    /// <inheritdoc />
    /// <remarks>Toy data is generated, so every draw is fresh.</remarks>
    public override IDataSource HeldOutData(int count) => Data.Train;
}

/// <summary>
/// Images [C, H, W] in [−1, 1]: a UNet, PNG grids, classifier-FID and class coverage (and SSIM and
/// RMSE for restorations), inpainting, and sampling in chunks of 500.
/// </summary>
public sealed class ImageModality : Modality
{
    internal ImageModality(OpenedData data, Device device) : base(data, device) { }

    /// <summary>The training images.</summary>
    public ImageDataset Train => (ImageDataset)Data.Train;

    /// <summary>The held-out images.</summary>
    public ImageDataset Test => (ImageDataset)Data.Test;

    /// <inheritdoc />
    public override string Name => "images";

    /// <inheritdoc />
    public override string SampleExtension => ".png";

    /// <inheritdoc />
    public override int TrajectoryStepsShown => 16;

    /// <inheritdoc />
    /// <remarks>For each followed sample two rows: x_t at up to 16 steps and then the sample, and the estimate of x_0 at the same steps.</remarks>
    public override void WriteTrajectory(string path, TrajectoryRecorder trajectory, string title)
    {
        RequirePng(path);
        var steps = trajectory.Spread(TrajectoryStepsShown);
        if (steps.Count == 0) return;
        using var scope = torch.NewDisposeScope();
        long rows = steps[0].Xt.shape[0];
        if (steps[0].Xt.shape.Length != 4 || steps[0].Clean.shape.Length != 4)
            throw new UdmException("this family's x_t is not an image (a latent); --trajectory shows image families whose x_t has pixels.") { Subject = "trajectory" };
        var blank = torch.full_like(steps[0].Xt[0], -1); // black
        var images = new List<Tensor>();
        for (long r = 0; r < rows; r++)
        {
            images.AddRange(steps.Select(s => s.Xt[r].clamp(-1, 1)));
            images.Add(trajectory.Final is { } final ? final[r].clamp(-1, 1) : blank);
            images.AddRange(steps.Select(s => s.Clean[r].clamp(-1, 1)));
            images.Add(blank);
        }
        ImageGrid.Save(path, torch.stack(images, 0), columns: steps.Count + 1);
    }

    /// <summary>The most images a PNG grid shows (a 32 × 32 sheet).</summary>
    public const int MaxGridImages = 1024;

    /// <inheritdoc />
    /// <remarks>A UNet holds about 40 float32 feature maps of 32 channels at full resolution per image.</remarks>
    protected override long SampleWorkingBytes => 40L * 32 * Train.SampleShape[1] * Train.SampleShape[2] * sizeof(float);

    /// <inheritdoc />
    /// <remarks>
    /// 64, the batch the benchmarks measure. Larger batches are slower per image, not faster: their feature
    /// maps cross the allocator's mmap threshold (<see cref="Platform.MmapThresholdBytes"/>) and every
    /// allocation faults in fresh pages (20 restoration steps of 256 MNIST images took 13× as long as 64).
    /// </remarks>
    protected override int MaxSamplingBatch => 64;

    /// <inheritdoc />
    public override void CheckOutput(string path, int count)
    {
        RequirePng(path);
        if (count > MaxGridImages)
            throw new UdmException($"a PNG grid shows at most {MaxGridImages:N0} images, not {count:N0}; use --count {MaxGridImages} or less (udm eval measures larger counts).") { Subject = "count" };
    }

    /// <inheritdoc />
    public override bool EightBitLevels => true;

    /// <summary>The metric classifier and reference features of this data set.</summary>
    public ImageJudge Judge() => ImageJudge.For(Train, Test);

    /// <inheritdoc />
    public override nn.Module<Tensor, Tensor, Tensor> Denoiser(ExperimentConfig config) => new UNet(UNetConfig(config));

    /// <summary>The UNet config with the data's channel count (and class count when conditional).</summary>
    public UNetConfig UNetConfig(ExperimentConfig config)
    {
        var unet = (config.UNet ?? new UNetConfig()) with { InChannels = (int)Train.SampleShape[0] };
        if (unet.ClassCount > 0 && unet.ClassCount != Train.ClassCount)
            throw new UdmException($"unet.classCount is {unet.ClassCount} but {Train.Name} has {Train.ClassCount} classes; set it to {Train.ClassCount} (or 0 for unconditional).") { Subject = "unet.classCount" };
        unet.Validate();
        return unet;
    }

    /// <inheritdoc />
    public override void Write(string path, Tensor samples, string title)
    {
        CheckOutput(path, (int)samples.shape[0]);
        // As many columns as classes, so that the class-conditional samplers' labels (0, 1, …, K − 1, 0, …) line up in columns.
        ImageGrid.Save(path, samples, columns: Train.ClassCount > 1 ? Train.ClassCount : 8);
    }

    /// <summary>
    /// Writes a restoration sheet: rows of 8 originals, their degraded versions and the restorations,
    /// repeated, so that each column shows one image's journey.
    /// </summary>
    public static void WriteSheet(string path, Tensor originals, Tensor degraded, Tensor restored)
    {
        RequirePng(path);
        using var scope = torch.NewDisposeScope();
        long n = originals.shape[0];
        var rows = new List<Tensor>();
        for (long start = 0; start < n; start += 8)
        {
            long width = Math.Min(8, n - start);
            foreach (var t in new[] { originals, degraded, restored })
            {
                var row = t.narrow(0, start, width);
                if (width < 8) row = torch.cat([row, torch.zeros([8 - width, .. t.shape[1..]], device: t.device)], 0);
                rows.Add(row);
            }
        }
        ImageGrid.Save(path, torch.cat(rows, 0).cpu(), columns: 8);
    }

    private static void RequirePng(string path)
    {
        if (!Path.GetExtension(path).Equals(".png", StringComparison.OrdinalIgnoreCase))
            throw new UdmException($"{path}: image samples are written as a .png grid.") { Subject = "out" };
    }

    /// <inheritdoc />
    public override Dictionary<string, double> Judge(Tensor samples, long seed) => Judge().Generation(samples);

    /// <summary>Restoration metrics: the generation metrics of the restorations, and SSIM and RMSE against the originals.</summary>
    public Dictionary<string, double> JudgeRestoration(Tensor restored, Tensor originals) => Judge().Restoration(restored, originals);

    /// <summary>The share of <paramref name="samples"/> that the project's classifier assigns to their <paramref name="labels"/>.</summary>
    public double LabelAgreement(Tensor samples, Tensor labels)
    {
        using var scope = torch.NewDisposeScope();
        return Judge().Classifier.Predict(samples).to(labels.device).eq(labels).to(ScalarType.Float64).mean().item<double>();
    }

    /// <inheritdoc />
    public override FixedPart Inpainting(string imagePath, string maskPath, int count)
    {
        var shape = Train.SampleShape;
        using var scope = torch.NewDisposeScope();
        var image = ImageGrid.Load(imagePath, (int)shape[0]);
        if (image.shape[2] != shape[1] || image.shape[3] != shape[2])
            throw new UdmException($"{imagePath} is {image.shape[3]}×{image.shape[2]} pixels; this model makes {shape[2]}×{shape[1]} images.") { Subject = "inpaint" };
        var mask = ImageGrid.LoadMask(maskPath, (int)shape[1], (int)shape[2]);
        var known = image.to(Device).expand(count, -1, -1, -1).contiguous();
        var keep = mask.to(Device).expand(count, shape[0], -1, -1).contiguous();
        return new FixedPart(known.MoveToOuterDisposeScope(), keep.MoveToOuterDisposeScope());
    }

    /// <inheritdoc />
    public override IDataSource HeldOutData(int count) => Test.Take(count);
}

/// <summary>Fixed-length token sequences: text files, n-gram perplexity, distinct-n and the copy rate.</summary>
public sealed class TextModality : Modality
{
    private readonly TextJudge _judge;

    internal TextModality(OpenedData data, Device device) : base(data, device) => _judge = new TextJudge(Train);

    /// <summary>The training sequences.</summary>
    public TokenDataset Train => (TokenDataset)Data.Train;

    /// <summary>The held-out sequences.</summary>
    public TokenDataset Test => (TokenDataset)Data.Test;

    /// <inheritdoc />
    public override string Name => "text";

    /// <inheritdoc />
    public override string SampleExtension => ".txt";

    /// <inheritdoc />
    /// <remarks>The Transformer's logits and the samplers' marginals: about 8 float32 values per position and vocabulary entry.</remarks>
    protected override long SampleWorkingBytes => 8L * Train.Length * Train.Vocabulary.Count * sizeof(float);

    /// <inheritdoc />
    public override void CheckOutput(string path, int count)
    {
        if (!Path.GetExtension(path).Equals(".txt", StringComparison.OrdinalIgnoreCase))
            throw new UdmException($"{path}: text samples are written as a .txt file.") { Subject = "out" };
    }

    /// <inheritdoc />
    public override void Write(string path, Tensor samples, string title)
    {
        CheckOutput(path, (int)samples.shape[0]);
        _judge.Write(path, samples, title);
    }

    /// <inheritdoc />
    public override Dictionary<string, double> Judge(Tensor samples, long seed) => _judge.Quality(_judge.Decode(samples));

    /// <summary>Decodes sequences to strings ([PAD] removed).</summary>
    public IReadOnlyList<string> Decode(Tensor sequences) => _judge.Decode(sequences);

    /// <inheritdoc />
    public override string TrajectoryExtension => ".txt";

    /// <inheritdoc />
    /// <remarks>
    /// For each followed sample, a line per step: the level, x_t with the positions that changed since
    /// the previous step in ⟨ ⟩, and the estimate of x_0 (each position's most likely token); [MASK] shows as _.
    /// </remarks>
    public override void WriteTrajectory(string path, TrajectoryRecorder trajectory, string title)
    {
        CheckOutput(path, 0);
        if (trajectory.Steps.Count > 0 && trajectory.Steps[0].Xt.is_floating_point())
            throw new UdmException("this family's x_t is a latent, not text; --trajectory shows the mask and edit families.") { Subject = "trajectory" };
        string Show(long id) => ShowToken(id);
        var text = new System.Text.StringBuilder($"# {title}\n# each line: level t, x_t (⟨changed since the line above⟩), then the most likely x_0\n");
        long rows = trajectory.Steps.Count == 0 ? 0 : trajectory.Steps[0].Xt.shape[0];
        for (long r = 0; r < rows; r++)
        {
            text.Append($"\n## sample {r + 1}\n");
            long[]? before = null;
            foreach (var step in trajectory.Steps)
            {
                long[] now = step.Xt[r].data<long>().ToArray(), clean = step.Clean[r].data<long>().ToArray();
                var xt = string.Concat(now.Select((id, i) => before is not null && before[i] != id ? $"⟨{Show(id)}⟩" : Show(id)));
                text.Append(FormattableString.Invariant($"t={step.T,4}  {xt}   x̂_0: {string.Concat(clean.Select(Show))}\n"));
                before = now;
            }
            if (trajectory.Final is { } final) text.Append($"  end  {_judge.Decode(final.narrow(0, r, 1))[0]}\n");
        }
        AtomicFile.WriteAllText(path, text.ToString());
    }

    /// <summary>One token as a trajectory shows it: [MASK] as _, [PAD] as nothing.</summary>
    public string ShowToken(long id) => id == Tokens.Vocabulary.MaskId ? "_" : id == Tokens.Vocabulary.PadId ? "" : Train.Vocabulary.Tokens[(int)id];

    /// <summary>A sequence of token ids as a person reads it mid-sampling: <see cref="ShowToken"/> for each, poems split into their lines.</summary>
    public string Show(IEnumerable<long> ids) => Format(string.Concat(ids.Select(ShowToken)));

    /// <summary>A text formatted for reading: poems split into their lines.</summary>
    public string Format(string text) => _judge.Format(text);

    /// <inheritdoc />
    public override IDataSource HeldOutData(int count) => Test;

    /// <inheritdoc />
    /// <remarks>Held-out sequences: the text metrics' n-gram model is fitted to the training set.</remarks>
    public override Tensor ReferenceSamples(int count, long seed) => HeldOutSequences(count);

    /// <summary>The first <paramref name="count"/> held-out sequences, in order, on the device.</summary>
    public Tensor HeldOutSequences(int count) => Test.Sequences.narrow(0, 0, Math.Min(count, (int)Test.Sequences.shape[0])).to(Device);
}
