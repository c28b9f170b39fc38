namespace UnifiedDiffusion.Networks;

/// <summary>
/// Counts the multiply-add work of the project's layers while a scope is open (per thread): 2 FLOPs
/// per multiply-add of every convolution (at its true channel counts, not the padded ones), linear
/// layer and attention product, the work a network's GFLOP/s is judged by. Element-wise operations
/// and normalisations are not counted. Also records each convolution's shape, for peak measurements.
/// </summary>
public sealed class FlopCounter : IDisposable
{
    [ThreadStatic] private static FlopCounter? _current;
    private readonly FlopCounter? _outer;
    private readonly Dictionary<ConvolutionShape, long> _convolutions = [];

    private FlopCounter()
    {
        _outer = _current;
        _current = this;
    }

    /// <summary>True while a counter is open on this thread; layers build their shapes for it only then.</summary>
    public static bool Counting => _current is not null;

    /// <summary>Starts counting on this thread until disposed.</summary>
    public static FlopCounter Start() => new();

    /// <summary>FLOPs counted so far.</summary>
    public long Total { get; private set; }

    /// <summary>The convolutions seen, with the FLOPs each shape accounted for.</summary>
    public IReadOnlyDictionary<ConvolutionShape, long> Convolutions => _convolutions;

    /// <summary>Adds a convolution: 2·B·C_out·C_in·k²·H_out·W_out.</summary>
    internal static void Convolution(ConvolutionShape shape)
    {
        if (_current is not { } counter) return;
        long flops = shape.Flops;
        counter.Total += flops;
        counter._convolutions[shape] = counter._convolutions.GetValueOrDefault(shape) + flops;
    }

    /// <summary>Adds a matrix product of [rows, inner] by [inner, columns]: 2·rows·inner·columns.</summary>
    internal static void MatrixProduct(long rows, long inner, long columns)
    {
        if (_current is { } counter) counter.Total += 2 * rows * inner * columns;
    }

    /// <inheritdoc />
    public void Dispose() => _current = _outer;
}

/// <summary>A 2-D convolution's shape: batch, channels in and out, kernel, stride and input size.</summary>
public readonly record struct ConvolutionShape(long Batch, long Input, long Output, long Kernel, long Stride, long Height, long Width)
{
    /// <summary>Output height (padding k/2).</summary>
    public long OutputHeight => (Height + 2 * (Kernel / 2) - Kernel) / Stride + 1;

    /// <summary>Output width (padding k/2).</summary>
    public long OutputWidth => (Width + 2 * (Kernel / 2) - Kernel) / Stride + 1;

    /// <summary>2 FLOPs per multiply-add.</summary>
    public long Flops => 2 * Batch * Output * Input * Kernel * Kernel * OutputHeight * OutputWidth;
}
