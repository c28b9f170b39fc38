using System.Diagnostics;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Output;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>Hot (Gaussian) diffusion: DDPM, DDIM, DDIM-η and Analytic-DPM over any denoiser network.</summary>
public sealed class GaussianFamilyModel : FamilyModel
{
    private readonly IDataSource _data;
    private readonly Device _device;
    private GammaTable? _gamma;
    private string? _runDirectory;
    private long _step;

    internal GaussianFamilyModel(ExperimentConfig config, IDataSource data, nn.Module<Tensor, Tensor, Tensor> network,
        nn.Module<Tensor, Tensor, Tensor> ema, Device device)
    {
        _data = data;
        _device = device;
        GaussianProcess = new GaussianProcess(NoiseSchedule.Create(config.Schedule));
        TrainedNetwork = network;
        SamplingNetwork = ema;
        TrainingModel = new GaussianPosteriorModel(GaussianProcess, network, config.Prediction, config.ClipSample);
        Model = new GaussianPosteriorModel(GaussianProcess, ema, config.Prediction, config.ClipSample);
    }

    /// <inheritdoc />
    public override string Family => "gaussian";

    /// <summary>The Gaussian forward process.</summary>
    public GaussianProcess GaussianProcess { get; }

    /// <inheritdoc />
    public override IForwardProcess Process => GaussianProcess;

    /// <summary>The trained denoiser.</summary>
    public nn.Module<Tensor, Tensor, Tensor> TrainedNetwork { get; }

    /// <summary>The EMA denoiser used for sampling.</summary>
    public nn.Module<Tensor, Tensor, Tensor> SamplingNetwork { get; }

    /// <inheritdoc />
    public override nn.Module Network => TrainedNetwork;

    /// <inheritdoc />
    public override nn.Module EmaNetwork => SamplingNetwork;

    /// <summary>The posterior model over the trained network (used by the loss).</summary>
    public GaussianPosteriorModel TrainingModel { get; }

    /// <summary>The posterior model over the EMA weights (used for sampling and evaluation).</summary>
    public GaussianPosteriorModel Model { get; }

    /// <inheritdoc />
    public override IReadOnlyList<string> SamplerNames => GaussianSamplerSpec.Names;

    /// <inheritdoc />
    public override string DefaultSampler => "ddim";

    /// <inheritdoc />
    public override Tensor Loss(Tensor x0, Tensor? labels, Generator generator) =>
        DenoisingObjective.Loss(GaussianProcess, TrainingModel, x0, generator);

    /// <summary>The Gaussian sampler spec of a family-neutral request.</summary>
    public GaussianSamplerSpec Spec(SamplerRequest request)
    {
        SamplerName(request);
        return ToSpec(request, DefaultSteps);
    }

    /// <summary>The Gaussian sampler spec of a family-neutral request (for oracles, which have no run).</summary>
    public static GaussianSamplerSpec ToSpec(SamplerRequest request, int defaultSteps = 50)
    {
        var kind = GaussianSamplerSpec.ParseKind(request.Sampler ?? "ddim");
        if (request.Guidance != 0 || request.Label is not null || request.Order is not null)
            throw new UdmException("--guidance, --label and --order do not apply to this Gaussian model.");
        return new GaussianSamplerSpec(kind, request.Steps ?? defaultSteps, request.Eta, request.Grid, request.Analytic);
    }

    /// <summary>
    /// The Γ table for Analytic-DPM, covering <paramref name="levels"/>: estimated by Monte Carlo
    /// over the training data (with the EMA model) where missing, and stored in the run folder.
    /// </summary>
    public GammaTable Gamma(IEnumerable<int> levels, int samplesPerLevel = 2000)
    {
        var needed = levels.Where(t => t > 0).ToArray();
        if (_gamma is null && _runDirectory is not null)
            _gamma = GammaTable.Load(Path.Combine(_runDirectory, Experiment.Files.Gamma), GaussianProcess.Steps, _step);
        _gamma ??= new GammaTable(GaussianProcess.Steps);
        // A fixed seed: the table is a property of the model, not of the sampling seed.
        if (_gamma.EstimateMissing(Model, GaussianProcess, _data, needed, samplesPerLevel, seed: 12345, _device) && _runDirectory is not null)
            _gamma.Save(Path.Combine(_runDirectory, Experiment.Files.Gamma), _step);
        return _gamma;
    }

    /// <summary>Draws <paramref name="count"/> samples with the given sampler.</summary>
    public Tensor Sample(GaussianSamplerSpec spec, int count, long seed, SamplingOptions? options = null)
    {
        var gamma = spec.NeedsGamma ? Gamma(GaussianSampling.Grid(spec, GaussianProcess.Steps)) : null;
        return GaussianSampling.Sample(GaussianProcess, Model, gamma, spec, count, _data.SampleShape, new Generator((ulong)seed, _device), _device, options);
    }

    /// <inheritdoc />
    public override Tensor Sample(SamplerRequest request, int count, long seed, SamplingOptions? options = null) =>
        Sample(Spec(request), count, seed, options);

    /// <inheritdoc />
    public override EvaluationResult Evaluate(SamplerRequest request, int count, long seed, SamplingOptions? options = null)
    {
        var spec = Spec(request);
        var clock = Stopwatch.StartNew();
        using var samples = Sample(spec, count, seed, options);
        return Evaluation.Result(samples, _data, spec, seed, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The negative ELBO in bits/dim of held-out data along the request's grid (ddpm and analytic-ddpm).</summary>
    public double NllBitsPerDim(SamplerRequest request, int count, long seed) =>
        Evaluation.NllBitsPerDim(GaussianProcess, Model, grid => Gamma(grid), Spec(request), _data, count, seed);

    /// <inheritdoc />
    public override void WriteSamples(string path, Tensor samples, string title)
    {
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (extension == ".csv")
        {
            var rows = samples.to(ScalarType.Float64).data<double>().ToArray().Chunk((int)samples.shape[1])
                .Select(row => string.Join(',', row.Select(v => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture))));
            AtomicFile.WriteAllText(path, string.Join('\n', rows) + "\n");
        }
        else if (extension == ".png") Plots.ScatterGrid(path, [(title, samples)]);
        else throw new UdmException($"--out {path}: use a .png or .csv file name.");
    }

    internal override void WeightsChanged(string? runDirectory, long step)
    {
        _runDirectory = runDirectory;
        _step = step;
        _gamma = null;
    }
}
