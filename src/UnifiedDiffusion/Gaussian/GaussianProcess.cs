using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Gaussian;

/// <summary>
/// The hot (Gaussian) forward process x_t = ᾱ_t x_0 + β̄_t ε, ε ~ N(0, I), with prior x_T ~ N(0, I).
/// It is invertible in ε: F_t⁻¹(x_0, x_t) = (x_t − ᾱ_t x_0)/β̄_t.
/// </summary>
public sealed class GaussianProcess : IForwardProcess
{
    private readonly Dictionary<string, (Tensor Signal, Tensor Noise)> _tables = [];
    private readonly Lock _gate = new();

    /// <summary>Creates the process for a schedule.</summary>
    public GaussianProcess(NoiseSchedule schedule) => Schedule = schedule;

    /// <summary>The noise schedule.</summary>
    public NoiseSchedule Schedule { get; }

    /// <inheritdoc />
    public int Levels => Schedule.Levels;

    /// <inheritdoc />
    public bool IsInvertible => true;

    /// <inheritdoc />
    public Tensor SampleNoise(Tensor x0, Generator? generator) =>
        torch.randn(x0.shape, dtype: x0.dtype, device: x0.device, generator: generator);

    /// <inheritdoc />
    public Tensor SamplePrior(long[] shape, Device device, Generator? generator) =>
        torch.randn(shape, dtype: ScalarType.Float32, device: device, generator: generator);

    /// <inheritdoc />
    public Tensor Corrupt(Tensor x0, Tensor t, Tensor noise)
    {
        var (a, b) = Coefficients(t, x0);
        return x0 * a + noise * b;
    }

    /// <inheritdoc />
    public Tensor InferNoise(Tensor x0, Tensor xt, Tensor t)
    {
        var (a, b) = Coefficients(t, x0);
        return NoiseOf(xt, x0, a, b);
    }

    /// <summary>ε = (x_t − ᾱ_t x_0)/β̄_t: the noise that takes x_0 to x_t. The one place this formula lives.</summary>
    public static Tensor NoiseOf(Tensor xt, Tensor x0, Tensor signal, Tensor noise) => (xt - x0 * signal) / noise;

    /// <inheritdoc cref="NoiseOf(Tensor, Tensor, Tensor, Tensor)" />
    public static Tensor NoiseOf(Tensor xt, Tensor x0, double signal, double noise) => (xt - x0 * signal) / noise;

    /// <summary>x_0 = (x_t − β̄_t ε)/ᾱ_t: the data that ε takes to x_t. The one place this formula lives.</summary>
    public static Tensor CleanOf(Tensor xt, Tensor eps, Tensor signal, Tensor noise) => (xt - eps * noise) / signal;

    /// <inheritdoc cref="CleanOf(Tensor, Tensor, Tensor, Tensor)" />
    public static Tensor CleanOf(Tensor xt, Tensor eps, double signal, double noise) => (xt - eps * noise) / signal;

    /// <summary>ᾱ_t and β̄_t gathered per sample and shaped to broadcast against <paramref name="like"/>.</summary>
    public (Tensor Signal, Tensor Noise) Coefficients(Tensor t, Tensor like)
    {
        var (signal, noise) = Tables(like.device);
        var shape = new long[like.dim()];
        Array.Fill(shape, 1L);
        shape[0] = -1;
        return (signal.index_select(0, t).view(shape), noise.index_select(0, t).view(shape));
    }

    // The schedule lives on the device once, so training and sampling never copy it per step.
    private (Tensor, Tensor) Tables(Device device)
    {
        lock (_gate)
        {
            if (!_tables.TryGetValue(device.ToString(), out var tables))
            {
                // Detached: the cache outlives whatever dispose scope first asked for it.
                tables = (torch.tensor(Schedule.SignalTable.Select(v => (float)v).ToArray(), device: device).DetachFromDisposeScope(),
                          torch.tensor(Schedule.NoiseTable.Select(v => (float)v).ToArray(), device: device).DetachFromDisposeScope());
                _tables[device.ToString()] = tables;
            }
            return tables;
        }
    }
}
