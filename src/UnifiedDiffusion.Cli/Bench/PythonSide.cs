using System.Diagnostics;
using System.Text.Json;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Interop;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Cli.Bench;

/// <summary>
/// The PyTorch reference (bench/pytorch/bench.py, Debian's python3-torch) and the child processes
/// of the memory rows. Every call is a fresh process, so rounds interleave with the C# side and a
/// memory row's peak RSS is its own.
/// </summary>
internal static class PythonSide
{
    public const string Python = "/usr/bin/python3";

    public static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(Environment.CurrentDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "bench", "pytorch", "bench.py"))) return dir.FullName;
        throw new UdmException("cannot find bench/pytorch/bench.py; run `udm bench --pytorch` from inside the repository.");
    }

    private static string Script(string name) => Path.Combine(RepoRoot(), "bench", "pytorch", name);

    /// <summary>One round of the PyTorch rows: id → value (ms or samples/s), plus "parameters.*" counts and versions.</summary>
    public static JsonElement Round(string settingsPath, IEnumerable<string> ids, int round) =>
        RunJson(Python, [Script("bench.py"), "--settings", settingsPath, "--rows", string.Join(',', ids), "--round", round.ToString()]);

    /// <summary>A memory row of the PyTorch side.</summary>
    public static JsonElement Memory(string settingsPath, string id) =>
        RunJson(Python, [Script("bench.py"), "--settings", settingsPath, "--memory-row", id]);

    /// <summary>A memory row of the C# side: this executable again, alone.</summary>
    public static JsonElement CSharpMemory(string settingsPath, string id)
    {
        string self = Environment.ProcessPath ?? throw new UdmException("cannot find the udm executable for the memory rows.");
        var args = new List<string>();
        // `dotnet udm.dll` vs the apphost: rerun the same way.
        if (Path.GetFileNameWithoutExtension(self) == "dotnet") args.Add(typeof(PythonSide).Assembly.Location);
        args.AddRange(["bench", "--settings", settingsPath, "--memory-row", id]);
        return RunJson(self, args, python: false);
    }

    /// <summary>
    /// Exports one forward pass of the MNIST UNet and the poem Transformer with shared random weights
    /// (<see cref="TwinExport"/>: safetensors in the layout of <c>udm export</c>) and checks the twins
    /// with bench/pytorch/check_parity.py.
    /// </summary>
    public static List<JsonElement> Parity(string folder)
    {
        var results = new List<JsonElement>();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        {
            var config = Recipes.Get("mnist").UNet! with { InChannels = 1 };
            var network = new UNet(config);
            Randomize(network, 7);
            network.eval();
            var x = torch.randn([4, 1, 28, 28], generator: new Generator(11));
            var t = torch.tensor(new long[] { 1, 10, 500, 1000 });
            var output = network.forward(x, t);
            string dir = Path.Combine(folder, "unet-mnist");
            TwinExport.Write(network, dir, new Dictionary<string, Tensor> { ["x"] = x, ["t"] = t, ["output"] = output });
            results.Add(RunJson(Python, [Script("check_parity.py"), dir]));
        }
        {
            var config = Recipes.Get("wujue-mask").Transformer!;
            const int vocab = TextWorkload.Vocab, length = TextWorkload.Length;
            var network = new TextTransformer(vocab, length, config, length);
            Randomize(network, 7);
            network.eval();
            var tokens = torch.randint(0, vocab, [4, length], generator: new Generator(11), dtype: ScalarType.Int64);
            var level = torch.tensor(new long[] { 0, 1, 13, 20 });
            var output = network.forward(tokens, level);
            string dir = Path.Combine(folder, "transformer");
            TwinExport.Write(network, dir, new Dictionary<string, Tensor> { ["tokens"] = tokens, ["level"] = level, ["output"] = output });
            results.Add(RunJson(Python, [Script("check_parity.py"), dir]));
        }
        return results;
    }

    private static void Randomize(nn.Module module, long seed)
    {
        // As the Parity tests: fan-in scaled weights, norms near 1, small biases.
        var generator = new Generator((ulong)seed);
        foreach (var (name, p) in module.named_parameters())
        {
            using var noise = torch.randn(p.shape, generator: generator);
            if (p.dim() >= 2) p.copy_(noise / Math.Sqrt(p.numel() / p.shape[0]));
            else if (name.EndsWith("weight", StringComparison.Ordinal)) p.copy_(1 + 0.1 * noise);
            else p.copy_(0.1 * noise);
        }
    }

    private static JsonElement RunJson(string program, IEnumerable<string> args, bool python = true)
    {
        var info = new ProcessStartInfo(program, args) { RedirectStandardOutput = true, RedirectStandardError = true };
        // Debian's OpenBLAS cannot identify this CPU (model name "Intel(R) Xeon(R) Processor") and falls
        // back to a generic kernel: 34 instead of 187 GFLOP/s on a 2048² matmul. Name the core for it,
        // so the reference is not handicapped; an explicit setting of the user's is kept.
        if (python && Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") is null && MachineInfo.HasAvx512())
            info.Environment["OPENBLAS_CORETYPE"] = "SkylakeX";
        Process process;
        try { process = Process.Start(info)!; }
        catch (System.ComponentModel.Win32Exception) when (python) { throw new UdmException("--pytorch needs /usr/bin/python3 with Debian's python3-torch; run bench/install-pytorch.sh."); }
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            string last = string.Join(" | ", stderr.Result.Trim().Split('\n').TakeLast(3));
            // check_parity.py exits 1 on a mismatch but still prints its JSON.
            if (!(python && stdout.TrimStart().StartsWith('{')))
                throw new UdmException($"{Path.GetFileName(program)} {string.Join(' ', args.Take(2))} failed: {last}");
        }
        return JsonDocument.Parse(stdout.Trim().Split('\n').Last()).RootElement.Clone();
    }
}
