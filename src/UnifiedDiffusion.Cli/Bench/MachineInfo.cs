using System.Runtime.InteropServices;
using System.Text.Json;
using TorchSharp;

namespace UnifiedDiffusion.Cli.Bench;

/// <summary>What the table's header states: the machine, both sides' versions, threads and the date.</summary>
internal static class MachineInfo
{
    public static bool HasAvx512() => Core.Platform.CpuFlags.Contains("avx512f");

    /// <summary>The CPU model and the ISA extensions that matter for libtorch kernels.</summary>
    public static string Cpu() => Core.Platform.CpuDescription();

    public static string Memory()
    {
        if (!File.Exists("/proc/meminfo")) return "";
        var total = File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal:", StringComparison.Ordinal));
        return total is null ? "" : $"{long.Parse(total.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024 / 1024.0:0.#} GB RAM";
    }

    /// <summary>The libtorch package the app was built against, from udm.deps.json.</summary>
    public static string LibTorch()
    {
        try
        {
            foreach (var deps in Directory.GetFiles(AppContext.BaseDirectory, "*.deps.json"))
            {
                using var doc = JsonDocument.Parse(File.ReadAllText(deps));
                foreach (var library in doc.RootElement.GetProperty("libraries").EnumerateObject())
                    if (library.Name.StartsWith("libtorch-", StringComparison.Ordinal)) return library.Name;
            }
        }
        catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException) { }
        return "libtorch (version unknown)";
    }

    public static Dictionary<string, string> Describe(int threads) => new()
    {
        ["date"] = DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm 'UTC'"),
        ["cpu"] = Cpu(),
        ["cores"] = Environment.ProcessorCount.ToString(),
        ["memory"] = Memory(),
        ["os"] = RuntimeInformation.OSDescription,
        ["dotnet"] = RuntimeInformation.FrameworkDescription,
        ["torchsharp"] = typeof(torch).Assembly.GetName().Version?.ToString() ?? "?",
        ["libtorch"] = LibTorch(),
        ["threads"] = threads.ToString(),
    };
}
