using System.Runtime.InteropServices;
using Xunit;

namespace UnifiedDiffusion.Tests.Platform;

/// <summary>Runs alone: another test allocating a large tensor at the same time would move hblkhd.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SerialAllocatorCollection
{
    /// <summary>The collection's name.</summary>
    public const string Name = "serial allocator";
}

[Collection(SerialAllocatorCollection.Name)]
public sealed class AllocatorTests
{
    // glibc's struct mallinfo2: ten size_t fields.
    [StructLayout(LayoutKind.Sequential)]
    private struct MallInfo2
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    // DllImport rather than LibraryImport: the test project does not allow unsafe code.
    [DllImport("libc", EntryPoint = "mallinfo2")]
    private static extern MallInfo2 MallInfo();

    [DllImport("libc", EntryPoint = "malloc")]
    private static extern nint Malloc(nuint size);

    [DllImport("libc", EntryPoint = "free")]
    private static extern void Free(nint pointer);

    [Fact]
    public void LargeAllocationsComeFromTheHeapNotFreshMmaps()
    {
        Assert.True(UnifiedDiffusion.Core.Platform.MallocTuned, "the module initializer did not tune glibc malloc");
        const int size = 24 << 20;
        ulong before = MallInfo().Hblkhd;
        nint block = Malloc(size);
        Assert.NotEqual(0, block);
        try
        {
            Marshal.WriteByte(block, size - 1, 1);
            ulong after = MallInfo().Hblkhd;
            // Untuned glibc mmaps anything above 128 KiB: hblkhd would grow by the whole 24 MiB.
            Assert.True(after <= before + (1 << 20), $"a 24 MiB malloc grew mmapped bytes from {before} to {after}");
        }
        finally
        {
            Free(block);
        }
    }
}
