using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>The denoiser network of a continuous run: an MLP for vectors, a UNet for images.</summary>
internal static class ImageNetworks
{
    /// <summary>The trained network and its EMA copy (same architecture).</summary>
    public static (nn.Module<Tensor, Tensor, Tensor> Network, nn.Module<Tensor, Tensor, Tensor> Ema) Create(ExperimentConfig config, OpenedData data)
    {
        var shape = data.Train.SampleShape;
        switch (data.Kind)
        {
            case DataKind.Vectors:
                return (new MlpDenoiser((int)shape[0], config.Network), new MlpDenoiser((int)shape[0], config.Network));
            case DataKind.Images:
                var unet = UNetFor(config, data);
                return (new UNet(unet), new UNet(unet));
            default:
                throw new UdmException($"the {config.Family} family works on vectors or images, not on the text set {data.Train.Name}; use the mask or edit family.");
        }
    }

    /// <summary>The UNet config with the data's channel count (and class count when conditional).</summary>
    public static UNetConfig UNetFor(ExperimentConfig config, OpenedData data)
    {
        var unet = (config.UNet ?? new UNetConfig()) with { InChannels = (int)data.Train.SampleShape[0] };
        if (unet.ClassCount > 0 && data.Train is ILabeledDataSource labeled && unet.ClassCount != labeled.ClassCount)
            throw new UdmException($"unet.classCount is {unet.ClassCount} but {data.Train.Name} has {labeled.ClassCount} classes; set it to {labeled.ClassCount} (or 0 for unconditional).");
        unet.Validate();
        return unet;
    }
}
