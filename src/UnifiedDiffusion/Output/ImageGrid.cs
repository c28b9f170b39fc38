using System.Runtime.InteropServices;
using SkiaSharp;
using TorchSharp;
using UnifiedDiffusion.Core;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Output;

/// <summary>
/// PNG input and output of images in the library's convention: float tensors [N, C, H, W] with
/// values in [−1, 1] (−1 = black, 1 = white), C = 1 (grayscale) or 3 (RGB). A value v maps to the
/// byte round((v + 1)·127.5), clamped to 0..255, and a byte b maps back to b/127.5 − 1.
/// </summary>
public static class ImageGrid
{
    /// <summary>The gray level (0..255) of the padding between grid cells.</summary>
    public const byte PaddingLevel = 128;

    /// <summary>
    /// Saves images [N, C, H, W] in [−1, 1] as one PNG grid, atomically: <paramref name="columns"/>
    /// cells per row (fewer when N is smaller), each image enlarged <paramref name="scale"/> times
    /// by pixel repetition, cells separated and surrounded by <paramref name="padding"/> pixels of
    /// gray <see cref="PaddingLevel"/>. The PNG is 8-bit grayscale for C = 1 and RGB for C = 3.
    /// The grid is columns·(W·scale + padding) + padding pixels wide, and likewise high.
    /// </summary>
    public static void Save(string path, Tensor images, int columns = 8, int scale = 2, int padding = 2)
    {
        ArgumentNullException.ThrowIfNull(images);
        if (images.dim() != 4) throw new ArgumentException($"images must be [N, C, H, W], not [{string.Join(", ", images.shape)}]", nameof(images));
        int n = (int)images.shape[0], c = (int)images.shape[1], h = (int)images.shape[2], w = (int)images.shape[3];
        if (n == 0) throw new ArgumentException("there are no images to save", nameof(images));
        if (c != 1 && c != 3) throw new ArgumentException($"images must have 1 or 3 channels, not {c}", nameof(images));
        ArgumentOutOfRangeException.ThrowIfLessThan(columns, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(scale, 1);
        ArgumentOutOfRangeException.ThrowIfNegative(padding);

        byte[] bytes; // [N, H, W, C]
        using (var scope = torch.NewDisposeScope())
        {
            var q = images.detach().to(ScalarType.Float32, torch.CPU).add(1.0).mul_(127.5).round_().clamp_(0, 255)
                .to(ScalarType.Byte).permute(0, 2, 3, 1).contiguous();
            bytes = q.data<byte>().ToArray();
        }

        int cols = Math.Min(columns, n), rows = (n + cols - 1) / cols;
        int cellW = w * scale, cellH = h * scale;
        int width = cols * (cellW + padding) + padding, height = rows * (cellH + padding) + padding;
        var colorType = c == 1 ? SKColorType.Gray8 : SKColorType.Rgba8888;
        var info = new SKImageInfo(width, height, colorType, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        int stride = bitmap.RowBytes;
        var canvas = new byte[stride * height];
        if (c == 1) Array.Fill(canvas, PaddingLevel);
        else
            for (int i = 0; i < canvas.Length; i += 4)
            {
                canvas[i] = canvas[i + 1] = canvas[i + 2] = PaddingLevel;
                canvas[i + 3] = 255;
            }

        for (int k = 0; k < n; k++)
        {
            int left = padding + k % cols * (cellW + padding), top = padding + k / cols * (cellH + padding);
            for (int y = 0; y < cellH; y++)
            {
                int row = (top + y) * stride;
                int source = (k * h + y / scale) * w * c;
                for (int x = 0; x < cellW; x++)
                {
                    int s = source + x / scale * c;
                    if (c == 1) canvas[row + left + x] = bytes[s];
                    else
                    {
                        int d = row + (left + x) * 4;
                        canvas[d] = bytes[s];
                        canvas[d + 1] = bytes[s + 1];
                        canvas[d + 2] = bytes[s + 2];
                    }
                }
            }
        }

        Marshal.Copy(canvas, 0, bitmap.GetPixels(), canvas.Length);
        using var image = SKImage.FromBitmap(bitmap);
        using var png = image.Encode(SKEncodedImageFormat.Png, 100)
            ?? throw new UdmException($"cannot encode a {width}×{height} PNG for {path}: try fewer images or a smaller scale.");
        AtomicFile.Write(path, stream => png.SaveTo(stream));
    }

    /// <summary>
    /// Loads a PNG (or JPEG, BMP, …) as a float tensor [1, C, H, W] in [−1, 1]. With
    /// <paramref name="channels"/> = 1, colour is converted to gray by the ITU-R 601 luma
    /// (0.299 R + 0.587 G + 0.114 B); with 3, a gray image is repeated over R, G and B.
    /// Transparency is ignored.
    /// </summary>
    public static Tensor Load(string path, int channels)
    {
        if (channels != 1 && channels != 3) throw new ArgumentOutOfRangeException(nameof(channels), "channels must be 1 or 3");
        var (rgba, width, height) = ReadRgba(path);
        int pixels = width * height;
        var values = new float[channels * pixels];
        for (int i = 0; i < pixels; i++)
        {
            float r = rgba[4 * i], g = rgba[4 * i + 1], b = rgba[4 * i + 2];
            if (channels == 1)
                values[i] = (0.299f * r + 0.587f * g + 0.114f * b) / 127.5f - 1f;
            else
            {
                values[i] = r / 127.5f - 1f;
                values[pixels + i] = g / 127.5f - 1f;
                values[2 * pixels + i] = b / 127.5f - 1f;
            }
        }
        return torch.tensor(values, [1, channels, height, width], dtype: ScalarType.Float32);
    }

    /// <summary>
    /// Loads an inpainting mask of exactly <paramref name="height"/>×<paramref name="width"/>
    /// pixels as bool [1, 1, H, W]: true (keep, known) where the gray level is above 127 (white),
    /// false (to be filled) where it is 127 or below (black). Colour masks are converted to gray first.
    /// </summary>
    public static Tensor LoadMask(string path, int height, int width)
    {
        var (rgba, w, h) = ReadRgba(path);
        if (w != width || h != height)
            throw new UdmException($"mask {path} is {w}×{h} pixels but the images are {width}×{height}: draw the mask at the images' size (white = keep, black = fill).");
        var known = new bool[w * h];
        for (int i = 0; i < known.Length; i++)
            known[i] = 0.299 * rgba[4 * i] + 0.587 * rgba[4 * i + 1] + 0.114 * rgba[4 * i + 2] > 127.0;
        return torch.tensor(known, [1, 1, h, w]);
    }

    // Decodes any format Skia reads into unpremultiplied RGBA bytes, without colour-space conversion.
    private static (byte[] Rgba, int Width, int Height) ReadRgba(string path)
    {
        if (!File.Exists(path)) throw new UdmException($"image {path} does not exist: check the path.");
        byte[] file;
        try { file = File.ReadAllBytes(path); }
        catch (IOException e) { throw new UdmException($"image {path} cannot be read ({e.Message}): check its permissions.", e); }
        catch (UnauthorizedAccessException e) { throw new UdmException($"image {path} cannot be read ({e.Message}): check its permissions.", e); }
        using var data = SKData.CreateCopy(file);
        using var codec = SKCodec.Create(data)
            ?? throw new UdmException($"image {path} is not a PNG, JPEG or other readable image: save it as PNG and try again.");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        var result = codec.GetPixels(info, bitmap.GetPixels());
        if (result != SKCodecResult.Success && result != SKCodecResult.IncompleteInput)
            throw new UdmException($"image {path} cannot be decoded ({result}): save it again as PNG and retry.");
        if (result == SKCodecResult.IncompleteInput)
            throw new UdmException($"image {path} is truncated: save it again as PNG and retry.");
        var rgba = new byte[info.BytesSize];
        Marshal.Copy(bitmap.GetPixels(), rgba, 0, rgba.Length);
        return (rgba, info.Width, info.Height);
    }
}
