using TorchSharp;
using UnifiedDiffusion.Networks;
using Xunit;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Networks;

/// <summary>
/// <see cref="ChannelPaddedConv2d"/> against a float64 convolution (whose gradients were checked
/// against finite differences) for the channel counts where libtorch 2.10's float32 oneDNN kernels
/// were wrong on an AVX-512 AMD EPYC: 20/24/40 input channels, 1/8/24 output channels.
/// </summary>
[Collection(nameof(UnifiedDiffusion.Tests.Runs.GoldenOutputCollection))] // alone: it seeds the global generator
public sealed class ConvolutionTests
{
    public static TheoryData<int, int, int, int> Shapes() => new()
    {
        { 1, 32, 3, 1 }, { 32, 1, 3, 1 }, { 24, 16, 3, 1 }, { 24, 8, 3, 1 }, { 40, 32, 3, 2 },
        { 20, 24, 3, 1 }, { 16, 16, 3, 1 }, { 48, 16, 1, 1 }, { 8, 24, 3, 2 }, { 16, 16, 3, 2 }, { 32, 32, 3, 2 }, { 48, 48, 3, 2 }, { 64, 64, 3, 2 }, { 96, 96, 3, 2 }, { 48, 48, 3, 1 }, { 96, 64, 3, 1 }, { 128, 64, 3, 1 }, { 80, 80, 3, 2 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void OutputsAndGradientsMatchFloat64(int input, int output, int kernel, int stride)
    {
        using var scope = torch.NewDisposeScope();
        var generator = new Generator(7);
        var conv = new ChannelPaddedConv2d(input, output, kernel, stride, padding: kernel / 2);
        for (int repeat = 0; repeat < 3; repeat++)
        {
            // Freed NaN-filled memory: the defect read uninitialised padding and turned it into NaN.
            torch.full(4_000_000, float.NaN).Dispose();
            var x = torch.randn([4, input, 8, 8], generator: generator).requires_grad_(true);
            var y = conv.forward(x);
            var upstream = torch.randn(y.shape, generator: generator);
            var grads = torch.autograd.grad([y], [x, conv.Weight], [upstream]);

            var x64 = x.detach().to(ScalarType.Float64).requires_grad_(true);
            var w64 = conv.Weight.detach().to(ScalarType.Float64).requires_grad_(true);
            var y64 = nn.functional.conv2d(x64, w64, conv.Bias.detach().to(ScalarType.Float64), strides: [stride, stride], padding: [kernel / 2, kernel / 2]);
            var grads64 = torch.autograd.grad([y64], [x64, w64], [upstream.to(ScalarType.Float64)]);

            Assert.True(MaxError(y, y64) < 1e-3, $"output error {MaxError(y, y64)}");
            using (torch.no_grad())
            {
                using var sampled = conv.forward(x);
                Assert.True(MaxError(sampled, y64) < 1e-3, $"output error without autograd {MaxError(sampled, y64)}");
            }
            Assert.True(MaxError(grads[0], grads64[0]) < 1e-3, $"input gradient error {MaxError(grads[0], grads64[0])}");
            Assert.True(MaxError(grads[1], grads64[1]) < 1e-2, $"weight gradient error {MaxError(grads[1], grads64[1])}");
        }
    }

    [Fact]
    public void KeepsTheParametersNamesAndInitialisationOfConv2d()
    {
        torch.manual_seed(3);
        using var reference = nn.Conv2d(24, 8, 3, padding: 1);
        torch.manual_seed(3);
        using var padded = new ChannelPaddedConv2d(24, 8, 3, padding: 1);
        Assert.Equal(["weight", "bias"], padded.named_parameters().Select(p => p.name));
        Assert.True(padded.Weight.eq(reference.weight!).all().item<bool>());
        Assert.True(padded.Bias.eq(reference.bias!).all().item<bool>());
    }

    private static double MaxError(Tensor a, Tensor reference) =>
        a.isfinite().all().item<bool>() ? (a.to(ScalarType.Float64) - reference).abs().max().item<double>() : double.PositiveInfinity;
}
