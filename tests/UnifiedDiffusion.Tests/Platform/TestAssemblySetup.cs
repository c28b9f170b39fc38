using System.Runtime.CompilerServices;

namespace UnifiedDiffusion.Tests.Platform;

internal static class TestAssemblySetup
{
    /// <summary>
    /// xunit runs test classes in parallel, one per core. libtorch's own intra-op pool would then
    /// put 2 × 2 threads on the 2 cores, and its spinning workers slow every test down several
    /// times. One libtorch thread per test keeps both cores busy without oversubscription.
    /// </summary>
#pragma warning disable CA2255 // Deliberate: set before any test creates a tensor.
    [ModuleInitializer]
    internal static void OneLibTorchThreadPerTest() => UnifiedDiffusion.Core.Platform.SetThreads(1);
#pragma warning restore CA2255
}
