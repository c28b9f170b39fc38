using System.Text;
using TorchSharp;
using UnifiedDiffusion.Networks;
using Xunit;

namespace UnifiedDiffusion.Tests.Platform;

/// <summary>
/// The three TorchSharp 0.107 defects this machine needs fixed (see the torchsharp notes):
/// the GLIBCXX version needs of libLibTorchSharp.so, GroupNorm's uninitialised affine parameters,
/// and glibc malloc's mmap threshold.
/// </summary>
public sealed class NativeLibraryTests
{
    private static readonly string[] NewGlibcxx = ["GLIBCXX_3.4.31", "GLIBCXX_3.4.32", "GLIBCXX_3.4.33"];

    [Fact]
    public void OutputCopyOfLibTorchSharpHasWeakGlibcxxNeedsAndLoads()
    {
        string path = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(path), $"missing {path}");
        var needs = ReadVersionNeeds(File.ReadAllBytes(path));
        var newer = needs.Where(n => NewGlibcxx.Contains(n.Name)).ToList();
        // TorchSharp 0.107 asks for GLIBCXX_3.4.32; if a new build asks for none, this test is stale.
        Assert.NotEmpty(newer);
        foreach (var (name, flags) in newer)
            Assert.True((flags & 0x2) != 0, $"{name} is not marked VER_FLG_WEAK (flags 0x{flags:x}) in {path}");
        // The older needs stay strong: the patch must touch only those three names.
        Assert.Contains(needs, n => n.Name == "GLIBCXX_3.4.30" && (n.Flags & 0x2) == 0);

        using var tensor = torch.arange(1, 11, dtype: torch.float32);
        Assert.Equal(55f, tensor.sum().item<float>());
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(1, 4)]
    [InlineData(2, 8)]
    [InlineData(4, 32)]
    [InlineData(8, 64)]
    [InlineData(32, 256)]
    public void GroupNormHelperInitialisesWeightToOnesAndBiasToZeros(long groups, long channels)
    {
        using var norm = Layers.GroupNorm(groups, channels);
        Assert.Equal([channels], norm.weight!.shape);
        Assert.True(norm.weight!.eq(1).all().item<bool>(), "GroupNorm weight is not all ones");
        Assert.True(norm.bias!.eq(0).all().item<bool>(), "GroupNorm bias is not all zeros");
    }

    /// <summary>(name, vna_flags) of every Elf64_Vernaux entry of the SHT_GNU_verneed section.</summary>
    internal static List<(string Name, ushort Flags)> ReadVersionNeeds(byte[] b)
    {
        Assert.True(b.Length > 64 && b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F', "not an ELF file");
        Assert.Equal(2, b[4]); // ELFCLASS64
        Assert.Equal(1, b[5]); // little-endian
        long shoff = BitConverter.ToInt64(b, 0x28);
        int shentsize = BitConverter.ToUInt16(b, 0x3A);
        int shnum = BitConverter.ToUInt16(b, 0x3C);
        var result = new List<(string, ushort)>();
        int sections = 0;
        for (int i = 0; i < shnum; i++)
        {
            int sh = checked((int)(shoff + (long)i * shentsize));
            if (BitConverter.ToUInt32(b, sh + 4) != 0x6ffffffe) continue; // SHT_GNU_verneed
            sections++;
            int offset = checked((int)BitConverter.ToInt64(b, sh + 0x18));
            int link = (int)BitConverter.ToUInt32(b, sh + 0x28);
            int strings = checked((int)BitConverter.ToInt64(b, checked((int)(shoff + (long)link * shentsize)) + 0x18));
            int vn = offset;
            while (true)
            {
                int count = BitConverter.ToUInt16(b, vn + 2);
                int va = vn + (int)BitConverter.ToUInt32(b, vn + 8);
                for (int k = 0; k < count; k++)
                {
                    ushort flags = BitConverter.ToUInt16(b, va + 4);
                    int name = strings + (int)BitConverter.ToUInt32(b, va + 8);
                    int end = Array.IndexOf(b, (byte)0, name);
                    result.Add((Encoding.ASCII.GetString(b, name, end - name), flags));
                    uint nextAux = BitConverter.ToUInt32(b, va + 12);
                    if (nextAux == 0) break;
                    va += (int)nextAux;
                }
                uint next = BitConverter.ToUInt32(b, vn + 12);
                if (next == 0) break;
                vn += (int)next;
            }
        }
        Assert.Equal(1, sections);
        return result;
    }
}
