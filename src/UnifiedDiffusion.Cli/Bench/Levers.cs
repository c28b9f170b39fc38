using System.Diagnostics;
using System.Globalization;
using TorchSharp;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using UnifiedDiffusion.Runs;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Cli.Bench;

/// <summary>
/// `udm bench --levers`: A/B measurements of the performance levers of issue 6 on the C# side, each
/// as the median of interleaved repetitions (A, B, A, B…), so that a busy machine distorts both alike.
/// </summary>
internal static class Levers
{
    private static void Log(string message) => Console.Error.WriteLine($"[levers {DateTime.Now:HH:mm:ss}] {message}");

    /// <summary>Median milliseconds of A and of B, interleaved.</summary>
    private static (double A, double B) AB(int reps, Action a, Action b)
    {
        a(); b(); // warm-up
        var (ta, tb) = (new List<double>(), new List<double>());
        for (int i = 0; i < reps; i++)
        {
            var clock = Stopwatch.StartNew();
            a();
            ta.Add(clock.Elapsed.TotalMilliseconds);
            clock.Restart();
            b();
            tb.Add(clock.Elapsed.TotalMilliseconds);
        }
        return (ToyWorkload.Median(ta), ToyWorkload.Median(tb));
    }

    private static readonly List<(string Lever, string What, double A, double B, string Note)> Results = [];

    private static void Report(string lever, string what, (double A, double B) t, string note = "")
    {
        Results.Add((lever, what, t.A, t.B, note));
        Log($"{lever}: {what}: {t.A:0.##} ms → {t.B:0.##} ms ({t.B / t.A:0.00}×) {note}");
    }

    public static void Run(BenchSettings settings)
    {
        int reps = settings.Name == "smoke" ? 3 : 9;
        int steps = settings.ImageSteps, count = settings.ImageSamples;

        var unet = new GaussianUNetWorkload(settings);
        unet.Build();
        var toy = new ToyWorkload(settings);
        toy.Build();
        var toyRequest = new SamplerRequest("ddim", settings.ToySteps);

        // 1. Inference mode around the whole sampler loop (the loop itself runs under no_grad).
        Report("inference_mode", $"UNet DDIM-{steps}, {count} images, ms (no_grad → inference_mode)",
            AB(reps, () => { using (unet.Sample("ddim", steps, count, 1)) { } },
                     () => { using (torch.inference_mode(true)) using (unet.Sample("ddim", steps, count, 1)) { } }));
        Report("inference_mode", $"toy MLP DDIM-{settings.ToySteps}, {settings.ToySamples} samples, ms (no_grad → inference_mode)",
            AB(reps, () => { using (toy.Experiment.Model.Sample(toyRequest, settings.ToySamples, 1)) { } },
                     () => { using (torch.inference_mode(true)) using (toy.Experiment.Model.Sample(toyRequest, settings.ToySamples, 1)) { } }));

        // 2. Channels-last activations. TorchSharp 0.107 has no memory_format argument anywhere (the enum
        // exists, no method takes it), so the input is given NHWC strides by permute-contiguous-permute;
        // libtorch's convolution then follows the input's suggested memory format.
        var network = (UNet)unet.Network;
        network.eval();
        using (var x = torch.randn([settings.ImageBatch, 1, 28, 28]))
        using (var t = torch.full([settings.ImageBatch], 500L, dtype: ScalarType.Int64))
        using (var nhwc = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2))
        using (torch.no_grad())
        {
            Report("channels_last", $"UNet forward, batch {settings.ImageBatch}, ms (NCHW → NHWC-strided input)",
                AB(reps, () => { using (network.forward(x, t)) { } }, () => { using (network.forward(nhwc, t)) { } }));

            // 3. Threads: 1 vs the configured count.
            int n = settings.Threads;
            var timed = AB(reps, () => { Platform.SetThreads(1); using (network.forward(x, t)) { } }, () => { Platform.SetThreads(n); using (network.forward(x, t)) { } });
            Platform.SetThreads(n);
            Report("threads", $"UNet forward, batch {settings.ImageBatch}, ms (1 → {n} threads)", timed);
            Log($"interop threads: {torch.get_num_interop_threads()} (the bench does not use inter-op parallelism)");

            // 4. bfloat16: the project's mixed precision (bf16 convolutions and linear layers, fp32 weights and norms).
            if (Precisions.CpuHasBf16)
            {
                Tensor Forward(Precision precision) { network.Precision = precision; return network.forward(x, t); }
                var timedHalf = AB(reps, () => { using (Forward(Precision.Fp32)) { } }, () => { using (Forward(Precision.Bf16)) { } });
                using var y32 = Forward(Precision.Fp32);
                using var y16 = Forward(Precision.Bf16);
                network.Precision = Precision.Fp32;
                double relative = ((y16 - y32).pow(2).mean().sqrt() / y32.pow(2).mean().sqrt()).item<float>();
                Report("bfloat16", $"UNet forward, batch {settings.ImageBatch}, ms (fp32 → bf16 mixed precision)", timedHalf,
                    $"relative RMS difference of ε̂ vs fp32: {relative.ToString("0.0000", CultureInfo.InvariantCulture)} (random weights)");
            }
            else Log("bfloat16: this CPU has no bf16 units; skipped");

            // 5. Where the UNet forward's time goes: its convolutions, each shape timed alone, against the whole pass.
            Dictionary<ConvolutionShape, long> shapes;
            using (var counter = FlopCounter.Start()) { network.forward(x, t).Dispose(); shapes = new(counter.Convolutions); }
            foreach (var precision in Precisions.CpuHasBf16 ? new[] { Precision.Fp32, Precision.Bf16 } : [Precision.Fp32])
            {
                network.Precision = precision;
                double whole = Workload.MedianMilliseconds(reps, () => network.forward(x, t).Dispose());
                double convolutions = 0;
                foreach (var (shape, flops) in shapes)
                {
                    var conv = new ChannelPaddedConv2d(shape.Input, shape.Output, shape.Kernel, shape.Stride, padding: shape.Kernel / 2);
                    using var input = torch.randn([shape.Batch, shape.Input, shape.Height, shape.Width]);
                    double one;
                    using (Autocast.Enter(precision)) one = Workload.MedianMilliseconds(reps, () => conv.forward(input).Dispose());
                    convolutions += one * flops / shape.Flops; // a shape used n times accounts for n timings
                    conv.Dispose();
                }
                Report("profile", $"UNet forward, batch {settings.ImageBatch}, {Precisions.Name(precision)}, ms (its convolutions timed alone → the whole pass)", (convolutions, whole),
                    $"convolutions {100 * convolutions / whole:0}% of the pass; the rest is normalisation, attention, element-wise work and memory traffic");
            }
            network.Precision = Precision.Fp32;
        }

        // bfloat16 on the Transformer, with the effect on the output.
        var config = Recipes.Get("wujue-mask").Transformer!;
        torch.manual_seed(0);
        if (Precisions.CpuHasBf16)
        {
            using var full = new TextTransformer(TextWorkload.Vocab, TextWorkload.Length, config, TextWorkload.Length);
            using var tokens = torch.randint(3, TextWorkload.Vocab, [settings.TextSamples, TextWorkload.Length], dtype: ScalarType.Int64);
            using var level = torch.full([settings.TextSamples], 10L, dtype: ScalarType.Int64);
            using var noGrad = torch.no_grad();
            full.eval();
            Tensor Forward(Precision precision) { full.Precision = precision; return full.forward(tokens, level); }
            var timed = AB(reps, () => { using (Forward(Precision.Fp32)) { } }, () => { using (Forward(Precision.Bf16)) { } });
            using var p32 = Forward(Precision.Fp32).softmax(-1);
            using var p16 = Forward(Precision.Bf16).softmax(-1);
            double tv = 0.5 * (p32 - p16).abs().sum(-1).mean().item<float>();
            Report("bfloat16", $"Transformer forward, batch {settings.TextSamples}, ms (fp32 → bf16 mixed precision)", timed,
                $"mean total-variation distance of q(x0|xt) vs fp32: {tv.ToString("0.0000", CultureInfo.InvariantCulture)} (random weights)");
        }

        // 5. The token samplers' per-step work outside the network, on one step's [B, L, V] marginals.
        var text = new TextWorkload(settings);
        text.Setup();
        using (var logits = torch.randn([settings.TextSamples, TextWorkload.Length, TextWorkload.Vocab], generator: new Generator(3)))
        using (var xt = torch.randint(3, TextWorkload.Vocab, [settings.TextSamples, TextWorkload.Length], dtype: ScalarType.Int64, generator: new Generator(4)))
        using (torch.no_grad())
        {
            var probabilities = logits.softmax(2);
            var masked = xt.remainder(2).eq(0);
            xt.masked_fill_(masked, Tokens.Vocabulary.MaskId);
            Report("token ops", $"mask carry-over on [{settings.TextSamples}, {TextWorkload.Length}, {TextWorkload.Vocab}], ms (one_hot + where → masked_fill + scatter)",
                AB(reps, () => { using var scope = torch.NewDisposeScope(); torch.where(masked.unsqueeze(2), probabilities, nn.functional.one_hot(xt, TextWorkload.Vocab).to(probabilities.dtype)); },
                         () => { using var scope = torch.NewDisposeScope(); var keep = masked.logical_not().unsqueeze(2); probabilities.masked_fill(keep, 0).scatter_(2, xt.unsqueeze(2), keep.to(probabilities.dtype)); }));
            Report("token ops", $"categorical draw of {settings.TextSamples * TextWorkload.Length} rows of {TextWorkload.Vocab}, ms (multinomial float64 → float32)",
                AB(reps, () => { using var scope = torch.NewDisposeScope(); torch.multinomial(probabilities.reshape(-1, TextWorkload.Vocab).to(ScalarType.Float64), 1, replacement: true, generator: new Generator(5)); },
                         () => { using var scope = torch.NewDisposeScope(); torch.multinomial(probabilities.reshape(-1, TextWorkload.Vocab), 1, replacement: true, generator: new Generator(5)); }));
            Report("token ops", $"softmax of [{settings.TextSamples}, {TextWorkload.Length}, {TextWorkload.Vocab}], ms (float32; B is the same op again)",
                AB(reps, () => { using (logits.softmax(2)) { } }, () => { using (logits.softmax(2)) { } }));
        }
        Report("token ops", $"mask improved sampling, {settings.TextSamples} poems, ms (with → without the caching posterior model)",
            AB(reps, () => { using (text.Sample(true, settings.TextSamples, 1)) { } }, () => { using (text.Sample(true, settings.TextSamples, 1, cache: false)) { } }));

        Console.WriteLine($"### udm bench --levers ({settings.Name}), {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC, {settings.Threads} threads, {MachineInfo.Cpu()}");
        Console.WriteLine();
        Console.WriteLine("| lever | measurement | A ms | B ms | B/A | note |");
        Console.WriteLine("|---|---|---:|---:|---:|---|");
        foreach (var (lever, what, a, b, note) in Results)
            Console.WriteLine(FormattableString.Invariant($"| {lever} | {what} | {a:0.#} | {b:0.#} | {b / a:0.00} | {note} |"));
    }
}
