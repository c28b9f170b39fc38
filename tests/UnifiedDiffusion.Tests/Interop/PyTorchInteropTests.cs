using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.PyBridge;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Data;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Interop;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using UnifiedDiffusion.Tests.Cli;
using UnifiedDiffusion.Tests.Networks;
using UnifiedDiffusion.Tests.Runs;
using UnifiedDiffusion.Tokens;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Tests.Interop;

/// <summary>The interop tests start Python processes and train: they run alone.</summary>
[CollectionDefinition(nameof(PyTorchInteropCollection), DisableParallelization = true)]
public sealed class PyTorchInteropCollection;

/// <summary>
/// The PyTorch hand-off kit (interop/pytorch/udm_torch) against the C# side, through
/// /usr/bin/python3 with Debian's python3-torch: the twins' forward passes and the families' losses
/// on C# exports, torchrun training (2 processes, gloo) whose export <c>udm import</c> takes, and a
/// torch.save'd state dict. Without python3-torch these tests fail and say to run
/// bench/install-pytorch.sh.
/// </summary>
[Collection(nameof(PyTorchInteropCollection))]
[Trait("Category", "Interop")]
public sealed class PyTorchInteropTests(ITestOutputHelper log) : IDisposable
{
    /// <summary>Largest |C# − PyTorch| allowed for a forward pass or a loss (float32 arithmetic in different orders).</summary>
    private const double Tolerance = 1e-4;

    private const string Python = "/usr/bin/python3";

    private readonly string _root = Directory.CreateTempSubdirectory("udm-interop-").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private static readonly TrainingOptions Tiny = new(Steps: 2, BatchSize: 8, LearningRate: 1e-3, WarmupSteps: 1, CheckpointEvery: 2, LogEvery: 1, Seed: 3);

    // ---- helpers

    private static readonly Lazy<string> Root = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "interop", "pytorch", "udm_torch", "__init__.py"))) return dir.FullName;
        throw new InvalidOperationException("cannot find interop/pytorch/udm_torch above the test binaries.");
    });

    // The README's test command must work on a fresh machine, so a missing torch is installed once
    // (bench/install-pytorch.sh: Debian's python3-torch through apt, which needs root).
    private static readonly Lazy<string?> TorchProblem = new(() =>
    {
        string? Check()
        {
            if (!File.Exists(Python)) return $"{Python} does not exist";
            var (code, _, error) = RunPython(["-c", "import torch; print(torch.__version__)"], TimeSpan.FromSeconds(120));
            return code == 0 ? null : $"{Python} cannot import torch ({LastLine(error)})";
        }
        if (Check() is null) return null;
        var install = new ProcessStartInfo("bash", [Path.Combine(Root.Value, "bench", "install-pytorch.sh")]) { RedirectStandardOutput = true, RedirectStandardError = true };
        using (var process = Process.Start(install)!)
        {
            var stderr = process.StandardError.ReadToEndAsync();
            process.StandardOutput.ReadToEnd();
            if (!process.WaitForExit(TimeSpan.FromMinutes(10))) process.Kill(entireProcessTree: true);
            if (!process.HasExited || process.ExitCode != 0) return $"torch is missing and bench/install-pytorch.sh failed ({LastLine(stderr.Result)})";
        }
        return Check();
    });

    /// <summary>Fails (never skips) when python3-torch is missing, with the way to install it.</summary>
    private static void RequireTorch()
    {
        if (TorchProblem.Value is { } problem)
            Assert.Fail($"the PyTorch interop tests need {Python} with Debian's python3-torch: {problem}. Run bench/install-pytorch.sh (or apt install python3-torch).");
    }

    private static string LastLine(string text) => text.Trim().Split('\n').LastOrDefault() ?? "";

    /// <summary>Runs /usr/bin/python3 with interop/pytorch on the path, one thread per process; returns exit code, stdout and stderr.</summary>
    private static (int Code, string Output, string Error) RunPython(IEnumerable<string> args, TimeSpan timeout)
    {
        var info = new ProcessStartInfo(Python) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Root.Value };
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["PYTHONPATH"] = Path.Combine(Root.Value, "interop", "pytorch");
        info.Environment["OMP_NUM_THREADS"] = "1";
        // Debian's OpenBLAS does not recognise some AVX-512 CPUs and falls back to a slow generic kernel (see PythonSide).
        if (Environment.GetEnvironmentVariable("OPENBLAS_CORETYPE") is null && File.Exists("/proc/cpuinfo")
            && File.ReadLines("/proc/cpuinfo").Any(l => l.StartsWith("flags", StringComparison.Ordinal) && l.Contains(" avx512f")))
            info.Environment["OPENBLAS_CORETYPE"] = "SkylakeX";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            process.WaitForExit();
            Assert.Fail($"python3 {string.Join(' ', args.Take(3))} did not finish in {timeout.TotalSeconds} s: {LastLine(stderr.Result)}");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    private static (int Code, string Output, string Error) RunTorch(params string[] args)
    {
        RequireTorch();
        return RunPython(args, TimeSpan.FromSeconds(180));
    }

    private static IEnumerable<JsonElement> JsonLines(string output) =>
        output.Split('\n').Where(l => l.TrimStart().StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement.Clone());

    /// <summary>A tiny class-conditional Gaussian image run on the 8×8 fixture, trained 2 steps and exported.</summary>
    private (string Run, string Export) ImageRun(string name = "image")
    {
        var config = new ExperimentConfig
        {
            Data = "idx:" + Fixtures.ImageFolder(_root),
            UNet = new UNetConfig(BaseChannels: 8, ChannelMultipliers: [1, 2], AttentionAtLowest: true, TimeEmbedding: 16, ClassCount: 2),
            Schedule = new ScheduleConfig(Kind: ScheduleKind.Cosine, Levels: 100),
            Prediction = PredictionType.Velocity,
            ClipSample = 1.0,
            Training = Tiny,
        };
        string run = Path.Combine(_root, name + "-run"), export = Path.Combine(_root, name + "-export");
        Experiment.Create(config).Train(run);
        ModelExport.Export(Experiment.Load(run), export);
        return (run, export);
    }

    /// <summary>A tiny mask-model text run on the word fixture, trained 2 steps and exported.</summary>
    private (string Run, string Export) TextRun()
    {
        var config = new ExperimentConfig
        {
            Family = "mask",
            Data = "text:" + Fixtures.TextFile(_root),
            Transformer = new TransformerConfig(Dimension: 32, Layers: 2, Heads: 2, FeedForward: 48),
            Text = new TextConfig(Window: 12),
            Training = Tiny,
        };
        string run = Path.Combine(_root, "text-run"), export = Path.Combine(_root, "text-export");
        Experiment.Create(config).Train(run);
        ModelExport.Export(Experiment.Load(run), export);
        return (run, export);
    }

    private static int FreePort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        int port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static Dictionary<string, Tensor> Weights(string export) => Safetensors.LoadStateDict(Path.Combine(export, ModelExport.Files.Weights));

    private static Tensor Scalar(double value) => torch.tensor(new[] { (float)value });

    // ---- the tests

    [Fact]
    public void TwinsComputeTheCSharpForwardPassesAndLosses()
    {
        RequireTorch();
        // The runs train first: no_grad covers only the forward passes and losses below.
        var (imageRun, imageExport) = ImageRun();
        var (textRun, textExport) = TextRun();
        using var scope = torch.NewDisposeScope();
        using var noGrad = torch.no_grad();
        var folders = new List<string>();

        // Networks alone, random weights, every option of the twins.
        var networks = new (string Name, nn.Module Network)[]
        {
            ("unet-cond", new UNet(new UNetConfig(InChannels: 3, BaseChannels: 8, ChannelMultipliers: [1, 2, 3], ResBlocksPerLevel: 2, TimeEmbedding: 16, ClassCount: 4))),
            ("unet-plain", new UNet(new UNetConfig(BaseChannels: 8, ChannelMultipliers: [1, 2], AttentionAtLowest: false, TimeEmbedding: 16))),
            ("transformer", new TextTransformer(17, 6, new TransformerConfig(Dimension: 16, Layers: 2, Heads: 4, FeedForward: 24), 6)),
            ("transformer-latent", new TextTransformer(17, 6, new TransformerConfig(Dimension: 16, Layers: 1, Heads: 2, FeedForward: 24), 50, latentWidth: 5)),
            ("mlp", new MlpDenoiser(3, new MlpConfig(Hidden: 16, Depth: 2, TimeEmbedding: 8))),
        };
        var input = new Generator(11);
        foreach (var (name, network) in networks)
        {
            TwinExportTests.Randomize(network, 7);
            network.eval();
            var check = new Dictionary<string, Tensor>();
            switch (network)
            {
                case UNet unet:
                    var x = torch.randn([3, unet.Config.InChannels, 11, 11], generator: input);
                    var t = torch.tensor(new long[] { 1, 37, 1000 });
                    Tensor? labels = unet.ClassCount > 0 ? torch.tensor(new long[] { 0, 3, unet.ClassCount }) : null;
                    (check["x"], check["t"], check["output"]) = (x, t, unet.Forward(x, t, labels));
                    if (labels is not null) check["labels"] = labels;
                    break;
                case TextTransformer transformer when name.EndsWith("latent", StringComparison.Ordinal):
                    var latents = torch.randn([3, 6, 5], generator: input);
                    var latentLevels = torch.tensor(new long[] { 0, 20, 50 });
                    (check["tokens"], check["level"], check["output"]) = (latents, latentLevels, transformer.forward(latents, latentLevels));
                    break;
                case TextTransformer transformer:
                    var tokens = torch.randint(0, 17, [3, 6], generator: input, dtype: ScalarType.Int64);
                    var levels = torch.tensor(new long[] { 0, 2, 6 });
                    (check["tokens"], check["level"], check["output"]) = (tokens, levels, transformer.forward(tokens, levels));
                    break;
                case MlpDenoiser mlp:
                    var points = torch.randn([5, 3], generator: input);
                    var pointLevels = torch.tensor(new long[] { 1, 2, 300, 999, 1000 });
                    (check["x"], check["t"], check["output"]) = (points, pointLevels, mlp.forward(points, pointLevels));
                    break;
            }
            string folder = Path.Combine(_root, name);
            TwinExport.Write(network, folder, check);
            folders.Add(folder);
        }

        // Exported runs (udm export's own config.json and weights) with the losses on fixed draws.
        {
            var experiment = Experiment.Load(imageRun);
            var model = (GaussianFamilyModel)experiment.Model;
            model.Denoiser.eval();
            var generator = new Generator(5);
            var x0 = ((ImageModality)model.Modality).Train.Images.narrow(0, 0, 6);
            var t = torch.tensor(new long[] { 1, 2, 17, 50, 99, 100 });
            var noise = torch.randn(x0.shape, generator: generator);
            var labels = torch.tensor(new long[] { 0, 1, 2, 1, 0, 2 }); // 2 = the null label
            var xt = model.GaussianProcess.Corrupt(x0, t, noise);
            var check = new Dictionary<string, Tensor>
            {
                ["x"] = xt, ["t"] = t, ["labels"] = labels, ["output"] = model.Denoiser is UNet unet ? unet.Forward(xt, t, labels) : throw new InvalidOperationException(),
                ["loss.x0"] = x0, ["loss.t"] = t, ["loss.noise"] = noise, ["loss.labels"] = labels,
            };
            foreach (var prediction in new[] { PredictionType.Epsilon, PredictionType.Sample, PredictionType.Velocity })
            {
                var posterior = new GaussianPosteriorModel(model.GaussianProcess, model.Denoiser, prediction, 1.0);
                check["loss." + prediction.ToString().ToLowerInvariant()] = Scalar(posterior.Loss(x0, xt, t, noise, new Conditioning(labels)).item<float>());
            }
            TwinExport.WriteTensors(Path.Combine(imageExport, TwinExport.CheckFile), check);
            folders.Add(imageExport);
        }
        {
            var experiment = Experiment.Load(textRun);
            var model = (TokenFamilyModel)experiment.Model;
            model.Transformer.eval();
            var generator = new Generator(6);
            var x0 = model.Modality.Data.Train.Sample(5, generator);
            var t = torch.tensor(new long[] { 1, 3, 6, 11, 12 });
            var keys = torch.rand([5, model.Length], dtype: ScalarType.Float64, generator: generator);
            var xt = model.TokenProcess.Corrupt(x0, t, keys);
            int vocab = model.Vocabulary.Count;
            var edit = new EditProcess(model.Length, vocab);
            var editNoise = torch.rand([5, model.Length, 2], dtype: ScalarType.Float64, generator: generator);
            var check = new Dictionary<string, Tensor>
            {
                ["tokens"] = xt, ["level"] = t, ["output"] = model.Transformer.forward(xt, t),
                ["loss.x0"] = x0, ["loss.t"] = t, ["loss.keys"] = keys, ["loss.noise"] = editNoise, ["loss.usesPadding"] = Scalar(0),
                ["loss.meanOverMasked"] = Scalar(new TokenPosteriorModel(model.Transformer, model.TokenProcess, vocab).Loss(x0, xt, t, keys).item<float>()),
                ["loss.elbo"] = Scalar(new TokenPosteriorModel(model.Transformer, model.TokenProcess, vocab, weighting: MaskLossWeighting.Elbo).Loss(x0, xt, t, keys).item<float>()),
                ["loss.edit"] = Scalar(new TokenPosteriorModel(model.Transformer, edit, vocab).Loss(x0, edit.Corrupt(x0, t, editNoise), t, editNoise).item<float>()),
            };
            TwinExport.WriteTensors(Path.Combine(textExport, TwinExport.CheckFile), check);
            folders.Add(textExport);
        }

        var (code, output, error) = RunTorch(["-m", "udm_torch.check", .. folders, "--tolerance", Tolerance.ToString("R", System.Globalization.CultureInfo.InvariantCulture)]);
        var results = JsonLines(output).ToList();
        Assert.True(results.Count == folders.Count, $"udm_torch.check printed {results.Count} of {folders.Count} results (exit {code}): {LastLine(error)}");
        foreach (var result in results)
        {
            string folder = Path.GetFileName(result.GetProperty("folder").GetString()!);
            double diff = result.GetProperty("max_abs_diff").GetDouble();
            log.WriteLine($"{folder}: max |diff| {diff:0.0e+0} (output up to {result.GetProperty("max_abs_output").GetDouble():0.0}), "
                + string.Join(", ", result.GetProperty("losses").EnumerateObject().Select(l => $"loss {l.Name} {l.Value.GetProperty("csharp").GetDouble():0.0000} |diff| {l.Value.GetProperty("abs_diff").GetDouble():0.0e+0}")));
            Assert.True(diff <= Tolerance, $"{folder}: max |C# − PyTorch| = {diff:g3} > {Tolerance}");
            Assert.True(result.GetProperty("counts_match").GetBoolean(), $"{folder}: parameter counts differ");
            foreach (var loss in result.GetProperty("losses").EnumerateObject())
                Assert.True(loss.Value.GetProperty("abs_diff").GetDouble() <= Tolerance, $"{folder}: loss {loss.Name} C# {loss.Value.GetProperty("csharp")} vs PyTorch {loss.Value.GetProperty("pytorch")}");
            Assert.True(result.GetProperty("pass").GetBoolean(), $"{folder}: {result}");
        }
        Assert.Equal(["epsilon", "sample", "velocity"], results[^2].GetProperty("losses").EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal(["edit", "elbo", "meanOverMasked"], results[^1].GetProperty("losses").EnumerateObject().Select(p => p.Name).Order());
        Assert.Equal(0, code);
    }

    [Fact]
    public void DataIsReadAsTheCSharpSideReadsIt()
    {
        RequireTorch();
        var (imageRun, _) = ImageRun();
        var (textRun, _) = TextRun();
        var image = (ImageModality)Experiment.Load(imageRun).Model.Modality;
        var text = (TokenFamilyModel)Experiment.Load(textRun).Model;
        string script = """
            import json, sys
            from udm_torch.data import open_data
            for folder in sys.argv[1:]:
                config = json.load(open(folder + "/config.json"))
                data = open_data(config["data"], config["experiment"])
                if data.kind == "images":
                    print(json.dumps({"count": len(data), "sum": data.images.double().sum().item(), "labels": data.labels.sum().item(), "classes": data.class_count}))
                else:
                    print(json.dumps({"count": len(data), "vocabulary": data.vocabulary, "sum": data.sequences.sum().item()}))
            """;
        var (code, output, error) = RunTorch(["-c", script, Path.Combine(_root, "image-export"), Path.Combine(_root, "text-export")]);
        Assert.True(code == 0, LastLine(error));
        var results = JsonLines(output).ToList();
        using var scope = torch.NewDisposeScope();
        Assert.Equal(image.Train.Count, results[0].GetProperty("count").GetInt32());
        Assert.Equal(image.Train.Images.to(ScalarType.Float64).sum().item<double>(), results[0].GetProperty("sum").GetDouble(), 1e-6);
        Assert.Equal(image.Train.Labels.sum().item<long>(), results[0].GetProperty("labels").GetInt64());
        Assert.Equal(image.Train.ClassCount, results[0].GetProperty("classes").GetInt32());
        var sequences = ((TokenDataset)text.Modality.Data.Train).Sequences;
        Assert.Equal(text.Vocabulary.Tokens, results[1].GetProperty("vocabulary").EnumerateArray().Select(e => e.GetString()!));
        Assert.Equal((int)sequences.shape[0], results[1].GetProperty("count").GetInt32());
        Assert.Equal(sequences.sum().item<long>(), results[1].GetProperty("sum").GetInt64());
    }

    [Fact]
    public void TorchrunTrainsAnExportThatUdmImportsAndSamples()
    {
        RequireTorch();
        var (_, export) = ImageRun();
        string continued = Path.Combine(_root, "continued");
        // torchrun itself, with the kit's fix for torch 1.13 on Python 3.11 (udm_torch/torchrun.py); one node, a free port.
        var (code, output, error) = RunTorch(["-m", "udm_torch.torchrun", "--nnodes", "1", "--nproc_per_node", "2", "--master_port", FreePort().ToString(),
            "--monitor_interval", "0.5", "-m", "udm_torch.train_ddp", export, "--out", continued, "--steps", "20", "--warmup", "2", "--log-every", "10"]);
        Assert.True(code == 0, $"torchrun exited {code}: {LastLine(error)}\n{output}");
        var summary = JsonLines(output).Last();
        log.WriteLine(summary.ToString());
        Assert.Equal(2, summary.GetProperty("world_size").GetInt32());
        Assert.Equal("gloo", summary.GetProperty("backend").GetString());
        Assert.Equal(22, summary.GetProperty("step").GetInt32());
        Assert.True(double.IsFinite(summary.GetProperty("last_loss").GetDouble()));

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(continued, ModelExport.Files.Config)))!;
        Assert.Equal(22, config["step"]!.GetValue<int>());
        Assert.Equal(1 + 22, File.ReadAllLines(Path.Combine(continued, "loss.csv")).Length);
        Assert.True(File.Exists(Path.Combine(continued, ModelExport.Files.Scheduler)));

        string imported = Path.Combine(_root, "imported");
        Assert.Equal(0, CliTests.RunPrinting("import", continued, "--out", imported).Code);
        string png = Path.Combine(_root, "samples.png");
        Assert.Equal(0, CliTests.RunPrinting("sample", "--run", imported, "--sampler", "ddim", "--steps", "5", "--count", "4", "--out", png).Code);
        Assert.True(new FileInfo(png).Length > 0);

        using var scope = torch.NewDisposeScope();
        var before = Weights(export);
        var after = ModelExport.TwinStateDict(Experiment.Load(imported).Model.Network);
        Assert.Equal(before.Keys.Order(StringComparer.Ordinal), after.Keys.Order(StringComparer.Ordinal));
        Assert.All(after.Values, w => Assert.True(w.isfinite().all().item<bool>()));
        double change = before.Sum(p => (p.Value - after[p.Key]).abs().max().item<float>());
        Assert.True(change > 1e-4, $"20 steps of AdamW changed the EMA weights by only {change:g3}");
    }

    [Fact]
    public void AStateDictSavedByTorchImports()
    {
        RequireTorch();
        var (_, export) = ImageRun();
        string pthFolder = Path.Combine(_root, "pth");
        string script = """
            import os, shutil, sys, torch, udm_torch
            network, config = udm_torch.load(sys.argv[1])
            os.makedirs(sys.argv[2])
            torch.save(network.state_dict(), os.path.join(sys.argv[2], "model.pth"))
            shutil.copy(os.path.join(sys.argv[1], "config.json"), sys.argv[2])
            """;
        var (code, _, error) = RunTorch(["-c", script, export, pthFolder]);
        Assert.True(code == 0, LastLine(error));
        string imported = Path.Combine(_root, "from-pth");
        Assert.Equal(0, CliTests.RunPrinting("import", pthFolder, "--out", imported).Code);
        using var scope = torch.NewDisposeScope();
        var expected = Weights(export);
        var loaded = ModelExport.TwinStateDict(Experiment.Load(imported).Model.Network);
        Assert.Equal(expected.Keys.Order(StringComparer.Ordinal), loaded.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, tensor) in expected) Assert.True(tensor.equal(loaded[name]).all().item<bool>(), name);
    }

    [Fact]
    public void TheKitRefusesABrokenExportNamingTheTensor()
    {
        RequireTorch();
        using var scope = torch.NewDisposeScope();
        var network = new UNet(new UNetConfig(BaseChannels: 8, ChannelMultipliers: [1, 2], TimeEmbedding: 16));
        string good = Path.Combine(_root, "good");
        TwinExport.Write(network, good);
        var state = ModelExport.TwinStateDict(network);
        var cases = new (string Name, string Expected, Func<Dictionary<string, Tensor>, Dictionary<string, Tensor>> Break)[]
        {
            ("renamed", "has no tensor down.0.conv1.weight", s => s.ToDictionary(p => p.Key == "down.0.conv1.weight" ? "down.0._conv1.weight" : p.Key, p => p.Value)),
            ("transposed", "tensor down.1.conv1.weight has shape [8, 16, 3, 3]", s => s.ToDictionary(p => p.Key, p => p.Key == "down.1.conv1.weight" ? p.Value.permute(1, 0, 2, 3).contiguous() : p.Value)),
            ("float64", "tensor input.weight is F64; it must be F32", s => s.ToDictionary(p => p.Key, p => p.Key == "input.weight" ? p.Value.to(ScalarType.Float64) : p.Value)),
            ("extra", "holds tensor extra.weight", s => new Dictionary<string, Tensor>(s) { ["extra.weight"] = torch.zeros(2) }),
        };
        var folders = new List<string>();
        foreach (var (name, _, damage) in cases)
        {
            string folder = Path.Combine(_root, name);
            Directory.CreateDirectory(folder);
            File.Copy(Path.Combine(good, ModelExport.Files.Config), Path.Combine(folder, ModelExport.Files.Config));
            TwinExport.WriteTensors(Path.Combine(folder, ModelExport.Files.Weights), damage(state));
            folders.Add(folder);
        }
        string truncated = Path.Combine(_root, "truncated");
        Directory.CreateDirectory(truncated);
        File.Copy(Path.Combine(good, ModelExport.Files.Config), Path.Combine(truncated, ModelExport.Files.Config));
        var bytes = File.ReadAllBytes(Path.Combine(good, ModelExport.Files.Weights));
        File.WriteAllBytes(Path.Combine(truncated, ModelExport.Files.Weights), bytes[..^64]);
        folders.Add(truncated);
        string script = """
            import sys, udm_torch
            for folder in sys.argv[1:]:
                try:
                    udm_torch.load(folder)
                    print("loaded " + folder)
                except (udm_torch.ExportError, udm_torch.SafetensorsError) as e:
                    print("refused: " + str(e))
            """;
        var (code, output, error) = RunTorch(["-c", script, good, .. folders]);
        Assert.True(code == 0, LastLine(error));
        var lines = output.Trim().Split('\n');
        Assert.Equal(folders.Count + 1, lines.Length);
        Assert.StartsWith("loaded ", lines[0]);
        for (int i = 0; i < cases.Length; i++) Assert.Contains(cases[i].Expected, lines[i + 1]);
        Assert.Contains("lies outside the file", lines[^1]);
        Assert.All(lines.Skip(1), l => Assert.StartsWith("refused: ", l));
    }
}
