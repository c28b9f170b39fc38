using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// A run's Γ table for Analytic-DPM: loaded from the run folder, estimated by Monte Carlo over the
/// training data where levels are missing, and saved back. Valid for one checkpoint step.
/// </summary>
internal sealed class GammaStore(IDataSource data, Device device)
{
    private GammaTable? _table;
    private string? _runDirectory;
    private long _step;

    /// <summary>Forgets the table: the weights changed (after training or loading).</summary>
    public void Reset(string? runDirectory, long step)
    {
        _runDirectory = runDirectory;
        _step = step;
        _table = null;
    }

    /// <summary>
    /// The table covering <paramref name="levels"/> for <paramref name="model"/> on <paramref name="process"/>.
    /// <paramref name="samplesPerLevel"/> defaults to 2000 for low-dimensional data and 200 for images,
    /// where each draw already averages ‖ε̂‖² over hundreds of dimensions.
    /// </summary>
    public GammaTable Get(IPosteriorModel<GaussianPosterior> model, IForwardProcess process, IEnumerable<int> levels, int? samplesPerLevel = null)
    {
        int perLevel = samplesPerLevel ?? (data.SampleShape.Aggregate(1L, (a, b) => a * b) >= 64 ? 200 : 2000);
        var needed = levels.Where(t => t > 0).ToArray();
        string? path = _runDirectory is null ? null : Path.Combine(_runDirectory, Experiment.Files.Gamma);
        if (_table is null && path is not null) _table = GammaTable.Load(path, process.Levels, _step);
        _table ??= new GammaTable(process.Levels);
        // A fixed seed: the table is a property of the model, not of the sampling seed.
        if (_table.EstimateMissing(model, process, data, needed, perLevel, seed: 12345, device) && path is not null)
            _table.Save(path, _step);
        return _table;
    }
}
