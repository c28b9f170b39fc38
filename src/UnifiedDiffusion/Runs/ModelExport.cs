using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using TorchSharp.PyBridge;
using UnifiedDiffusion.Core;
using UnifiedDiffusion.Gaussian;
using UnifiedDiffusion.Networks;
using static TorchSharp.torch;

namespace UnifiedDiffusion.Runs;

/// <summary>
/// Models leaving and entering the program, in a folder laid out like a diffusers model:
/// <list type="bullet">
/// <item><c>config.json</c>: the format, family, data, the network (its PyTorch twin and the twin's
/// settings) and the whole experiment config, so that <c>udm import</c> rebuilds the run;</item>
/// <item><c>model.safetensors</c>: the EMA weights in float32 under the twins' parameter names
/// (<see cref="TwinNames.FromTorchSharp"/>); <c>udm import</c> also takes a PyTorch
/// <c>model.pth</c> state dict under the same names;</item>
/// <item><c>scheduler_config.json</c> for the Gaussian and encoding families: the noise schedule in
/// the keys of diffusers' DDPMScheduler;</item>
/// <item><c>README.md</c>: a model card: the facts, optional notes, the training sessions with their
/// wall time and commands, and the recorded evaluations with theirs; and the run's <c>loss.csv</c>,
/// <c>training.json</c> and <c>eval.json</c> (<see cref="RunRecords"/>) when it has them.</item>
/// </list>
/// </summary>
public static class ModelExport
{
    /// <summary>The <c>format</c> field of config.json.</summary>
    public const string Format = "unified-diffusion/1";

    /// <summary>File names of an exported folder.</summary>
    public static class Files
    {
        /// <summary>Format, family, network and experiment config.</summary>
        public const string Config = "config.json";

        /// <summary>The EMA weights, float32, twin names.</summary>
        public const string Weights = "model.safetensors";

        /// <summary>The same as a PyTorch state dict (import only).</summary>
        public const string PyTorchWeights = "model.pth";

        /// <summary>The Gaussian schedule in diffusers' DDPMScheduler keys.</summary>
        public const string Scheduler = "scheduler_config.json";

        /// <summary>The model card.</summary>
        public const string Card = "README.md";
    }

    /// <summary>
    /// The offset from a UDM level to a diffusers timestep: the networks take levels t = 1..T, and
    /// diffusers' timestep t − 1 (0..T−1) is the same noise level (its alphas_cumprod[t − 1] is ᾱ_t²).
    /// </summary>
    public const int LevelOffset = 1;

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>
    /// Writes <paramref name="experiment"/>'s model (its network holds the EMA weights once loaded)
    /// to <paramref name="folder"/>. The folder appears whole or not at all; an existing non-empty
    /// folder is replaced only with <paramref name="force"/>.
    /// </summary>
    public static void Export(Experiment experiment, string folder, bool force = false, string? notes = null)
    {
        if (notes is not null && !File.Exists(notes)) throw new UdmException($"the notes file {notes} does not exist; give a Markdown file, or leave --notes out.") { Subject = "notes" };
        if (File.Exists(folder)) throw new UdmException($"{folder} is a file; export into a folder.") { Subject = "out" };
        if (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any() && !force)
            throw new UdmException($"{folder} is not empty; export into a new folder, or pass --force to replace it.") { Subject = "out" };
        WriteWhole(folder, staging =>
        {
            var network = experiment.Model.Network;
            WriteSafetensors(network, Path.Combine(staging, Files.Weights));
            string checksum = Sha256Of(Path.Combine(staging, Files.Weights));
            File.WriteAllText(Path.Combine(staging, Files.Config), ConfigJson(experiment).ToJsonString(Indented) + "\n");
            if (SchedulerConfig(experiment.Config) is { } scheduler)
                File.WriteAllText(Path.Combine(staging, Files.Scheduler), scheduler.ToJsonString(Indented) + "\n");
            string? run = experiment.RunDirectory, trainingLog = null;
            if (run is not null && File.Exists(Path.Combine(run, Experiment.Files.LossCsv)))
            {
                File.Copy(Path.Combine(run, Experiment.Files.LossCsv), Path.Combine(staging, Experiment.Files.LossCsv));
                var losses = Experiment.ReadLosses(run);
                trainingLog = FormattableString.Invariant($"`{Experiment.Files.LossCsv}`: {losses.Count:N0} steps, mean loss of the last 100 {losses.TakeLast(100).Average():0.####}");
            }
            DataCard.Of(experiment.Config.Data, experiment.Opened).Save(staging);
            if (run is not null && experiment.Model.SamplingFiles.Count > 0)
            {
                experiment.Model.WriteSamplingFiles();
                foreach (string file in experiment.Model.SamplingFiles) File.Copy(Path.Combine(run, file), Path.Combine(staging, file));
            }
            foreach (string record in new[] { RunRecords.TrainingFile, RunRecords.EvaluationFile })
                if (run is not null && File.Exists(Path.Combine(run, record))) File.Copy(Path.Combine(run, record), Path.Combine(staging, record));
            var sessions = run is null ? [] : RunRecords.TrainingSessions(run);
            var evaluations = run is null ? [] : RunRecords.Evaluations(run);
            File.WriteAllText(Path.Combine(staging, Files.Card), ModelCard(experiment, trainingLog, checksum, sessions, evaluations,
                notes is null ? null : File.ReadAllText(notes), Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)))));
        });
    }

    /// <summary>
    /// Turns an exported folder back into a run folder <paramref name="runDirectory"/> that
    /// <c>udm sample</c> and <c>udm eval</c> take (config.json and a checkpoint at step 0 whose
    /// model and EMA weights are the imported ones). Every tensor is checked against the network
    /// that config.json describes before anything is written; the run folder appears whole or not at all.
    /// </summary>
    public static Experiment Import(string folder, string runDirectory, IProgress<string>? progress = null)
    {
        if (!Directory.Exists(folder)) throw new UdmException($"{folder} is not a folder; give the folder that `udm export` wrote.");
        if (File.Exists(runDirectory) || Directory.Exists(runDirectory) && Directory.EnumerateFileSystemEntries(runDirectory).Any())
            throw new UdmException($"{runDirectory} already exists; import into a new run folder.") { Subject = "out" };
        var config = ReadConfig(Path.Combine(folder, Files.Config)).ForSamplingOnThisCpu();
        VerifyChecksum(folder);
        // An import needs only the network: a data set that is not on this machine is not fetched, its card stands in.
        var experiment = Experiment.Create(config, progress, DataCard.StandInsUnlessOnThisMachine(folder, config.Data));
        var network = experiment.Model.Network;
        var expected = TwinStateDict(network);
        string safetensors = Path.Combine(folder, Files.Weights), pth = Path.Combine(folder, Files.PyTorchWeights);
        var loaded = File.Exists(safetensors) ? ReadSafetensors(safetensors, expected)
            : File.Exists(pth) ? ReadPyTorch(pth, expected)
            : throw new UdmException($"{folder} holds neither {Files.Weights} nor {Files.PyTorchWeights}; export the model again.");
        using (torch.no_grad())
            foreach (var (name, target) in expected)
            {
                target.copy_(loaded[name]);
                loaded[name].Dispose();
            }
        network.eval();
        WriteWhole(runDirectory, staging =>
        {
            File.WriteAllText(Path.Combine(staging, Experiment.Files.Config), config.ToJson());
            foreach (string file in experiment.Model.SamplingFiles.Prepend(DataCard.FileName).Where(f => File.Exists(Path.Combine(folder, f))))
                File.Copy(Path.Combine(folder, file), Path.Combine(staging, file));
            var trainer = experiment.CreateTrainer(config.Training); // its EMA shadow starts at the imported weights
            Checkpoint.Save(Path.Combine(staging, Checkpoint.FileName), trainer.Capture());
            trainer.Ema.Dispose();
        });
        return Experiment.Load(runDirectory, progress: progress, forSampling: true);
    }

    /// <summary>How the model card names the weights' checksum, followed by the hex digest in backticks.</summary>
    public const string ChecksumLabel = "SHA-256";

    /// <summary>The lower-case hex SHA-256 of a file.</summary>
    public static string Sha256Of(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(stream));
    }

    /// <summary>The SHA-256 of the weights that the folder's model card records, or null (a card from before checksums, or none).</summary>
    public static string? RecordedChecksum(string folder)
    {
        string card = Path.Combine(folder, Files.Card);
        if (!File.Exists(card)) return null;
        var match = System.Text.RegularExpressions.Regex.Match(File.ReadAllText(card), ChecksumLabel + " `([0-9a-f]{64})`");
        return match.Success ? match.Groups[1].Value : null;
    }

    /// <summary>
    /// Refuses weights whose SHA-256 differs from the one the model card records (a damaged or altered
    /// file), with <paramref name="advice"/> on what to do.
    /// </summary>
    public static void VerifyChecksum(string folder, string advice = "export the model again, or copy the folder again from where it came from")
    {
        string weights = Path.Combine(folder, Files.Weights);
        if (RecordedChecksum(folder) is not { } recorded || !File.Exists(weights)) return;
        string actual = Sha256Of(weights);
        if (actual != recorded)
            throw new UdmException($"{weights} is damaged: its SHA-256 is {actual[..12]}…, the model card records {recorded[..12]}…; {advice}.");
    }

    /// <summary>The network's state dict under the twins' names (the tensors are the module's own).</summary>
    public static Dictionary<string, Tensor> TwinStateDict(nn.Module network)
    {
        var state = new Dictionary<string, Tensor>();
        foreach (var (name, tensor) in network.state_dict())
            if (!state.TryAdd(TwinNames.FromTorchSharp(name), tensor))
                throw new InvalidOperationException($"two parameters map to the twin name {TwinNames.FromTorchSharp(name)}.");
        return state;
    }

    private static void WriteSafetensors(nn.Module network, string path)
    {
        using var scope = torch.NewDisposeScope();
        var state = TwinStateDict(network).ToDictionary(p => p.Key, p => p.Value.detach().to(p.Value.is_floating_point() ? ScalarType.Float32 : p.Value.dtype).cpu().contiguous());
        using var stream = File.Create(path);
        Safetensors.SaveStateDict(stream, state, leaveOpen: true);
    }

    /// <summary>
    /// Reads model.safetensors after checking its header against <paramref name="expected"/>: every
    /// tensor present, float32 (or the network's own type), the network's shape, inside the file,
    /// and nothing else. A failure names the tensor or field.
    /// </summary>
    private static Dictionary<string, Tensor> ReadSafetensors(string path, Dictionary<string, Tensor> expected)
    {
        string file = Path.GetFileName(path);
        long length = new FileInfo(path).Length;
        JsonElement header;
        using (var stream = File.OpenRead(path))
        {
            Span<byte> prefix = stackalloc byte[8];
            if (stream.ReadAtLeast(prefix, 8, throwOnEndOfStream: false) < 8)
                throw new UdmException($"{file} is truncated: it has no header; export the model again.");
            ulong headerLength = BitConverter.ToUInt64(prefix);
            if (headerLength > (ulong)(length - 8))
                throw new UdmException($"{file}: its header claims {headerLength} bytes but only {length - 8} follow; the file is truncated or not safetensors.");
            var bytes = new byte[headerLength];
            stream.ReadExactly(bytes);
            try { header = JsonDocument.Parse(bytes).RootElement.Clone(); }
            catch (JsonException) { throw new UdmException($"{file}: its header is not JSON; the file is damaged or not safetensors."); }
            if (header.ValueKind != JsonValueKind.Object) throw new UdmException($"{file}: its header is not a JSON object; the file is not safetensors.");
            length -= 8 + (long)headerLength;
        }
        var found = new Dictionary<string, (string Dtype, long[] Shape)>();
        foreach (var entry in header.EnumerateObject().Where(e => e.Name != "__metadata__"))
        {
            string dtype = entry.Value.TryGetProperty("dtype", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString()! : "";
            long[] shape = entry.Value.TryGetProperty("shape", out var s) && s.ValueKind == JsonValueKind.Array ? [.. s.EnumerateArray().Select(v => v.GetInt64())] : [];
            found[entry.Name] = (dtype, shape);
        }
        RequireSameTensors(file, expected, found, SafetensorsType);
        foreach (var (name, tensor) in expected)
        {
            var entry = header.GetProperty(name);
            long[] offsets = entry.TryGetProperty("data_offsets", out var o) && o.ValueKind == JsonValueKind.Array ? [.. o.EnumerateArray().Select(v => v.GetInt64())] : [];
            if (offsets.Length != 2 || offsets[0] < 0 || offsets[1] - offsets[0] != tensor.numel() * tensor.ElementSize || offsets[1] > length)
                throw new UdmException($"{file}: tensor {name} lies outside the file's {length} data bytes (data_offsets [{string.Join(", ", offsets)}]); the file is truncated or damaged.");
        }
        return Safetensors.LoadStateDict(path);
    }

    /// <summary>
    /// Reads a PyTorch state dict (torch.save's zip format). The unpickler builds tensors and
    /// containers only and never runs code; anything else in the pickle is refused.
    /// </summary>
    private static Dictionary<string, Tensor> ReadPyTorch(string path, Dictionary<string, Tensor> expected)
    {
        string file = Path.GetFileName(path);
        System.Collections.Hashtable table;
        try { table = PyTorchUnpickler.UnpickleStateDict(path); }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            throw new UdmException($"{file} is not a PyTorch state dict of tensors ({e.Message.Split('\n')[0]}); save one with torch.save(model.state_dict(), \"{file}\").");
        }
        var loaded = new Dictionary<string, Tensor>();
        foreach (System.Collections.DictionaryEntry entry in table)
        {
            if (entry.Value is not Tensor tensor)
                throw new UdmException($"{file}: {entry.Key} holds a {entry.Value?.GetType().Name ?? "null"}, not a tensor; only a state dict of tensors is accepted.");
            loaded[entry.Key.ToString()!] = tensor;
        }
        RequireSameTensors(file, expected, loaded.ToDictionary(e => e.Key, e => (e.Value.dtype.ToString(), e.Value.shape)), type => type.ToString());
        return loaded;
    }

    /// <summary>
    /// What every weights file must match, whatever its format: each tensor of the network present with
    /// its dtype (named by <paramref name="typeName"/>) and shape, and no other. A failure names the tensor.
    /// </summary>
    private static void RequireSameTensors(string file, Dictionary<string, Tensor> expected,
        IReadOnlyDictionary<string, (string Dtype, long[] Shape)> found, Func<ScalarType, string> typeName)
    {
        foreach (var (name, tensor) in expected)
        {
            if (!found.TryGetValue(name, out var entry))
                throw new UdmException($"{file} has no tensor {name} [{string.Join(", ", tensor.shape)}], which the network in config.json needs.");
            string wanted = typeName(tensor.dtype);
            if (entry.Dtype != wanted) throw new UdmException($"{file}: tensor {name} is {(entry.Dtype.Length == 0 ? "without a dtype" : entry.Dtype)}; it must be {wanted}.");
            if (!entry.Shape.SequenceEqual(tensor.shape))
                throw new UdmException($"{file}: tensor {name} has shape [{string.Join(", ", entry.Shape)}]; the network in config.json needs [{string.Join(", ", tensor.shape)}].");
        }
        if (found.Keys.FirstOrDefault(k => !expected.ContainsKey(k)) is { } extra)
            throw new UdmException($"{file} holds tensor {extra}, which the network in config.json does not have; export from a matching run.");
    }

    private static string SafetensorsType(ScalarType type) => type switch
    {
        ScalarType.Float32 => "F32",
        ScalarType.Int64 => "I64",
        ScalarType.Int32 => "I32",
        ScalarType.Bool => "BOOL",
        _ => type.ToString(),
    };

    private static ExperimentConfig ReadConfig(string path)
    {
        string file = Path.GetFileName(path);
        if (!File.Exists(path)) throw new UdmException($"{Path.GetDirectoryName(path)} has no {file}; give the folder that `udm export` wrote.");
        JsonNode? root;
        try { root = JsonNode.Parse(File.ReadAllText(path)); }
        catch (JsonException e) { throw new UdmException($"{file} is not valid JSON (line {e.LineNumber + 1}); export the model again."); }
        if (root?["format"]?.GetValue<string>() is not { } format)
            throw new UdmException($"{file} has no \"format\" field; it was not written by `udm export`.");
        if (format != Format) throw new UdmException($"{file} is in format {format}; this udm reads {Format}.");
        if (root["experiment"] is not JsonObject experiment) throw new UdmException($"{file} has no \"experiment\" object; export the model again.");
        return ExperimentConfig.FromJson(experiment.ToJsonString(), $"{file} (experiment)");
    }

    private static JsonObject ConfigJson(Experiment experiment)
    {
        var network = experiment.Model.Network;
        var twin = network as ITwinNetwork;
        return new JsonObject
        {
            ["format"] = Format,
            ["family"] = experiment.Config.Family,
            ["data"] = experiment.Config.Data,
            ["step"] = experiment.Step,
            ["network"] = twin is null ? null : new JsonObject
            {
                ["model"] = twin.TwinModel,
                ["config"] = JsonSerializer.SerializeToNode(twin.TwinConfig),
                ["parameters"] = NetworkInfo.ParameterCount(network),
            },
            ["weights"] = new JsonObject
            {
                ["file"] = Files.Weights,
                ["dtype"] = "float32",
                ["kind"] = "EMA",
                ["names"] = "the PyTorch twins' (interop/pytorch): TorchSharp's state-dict names without the leading underscore of each part",
            },
            ["experiment"] = JsonNode.Parse(experiment.Config.ToJson()),
        };
    }

    /// <summary>
    /// The Gaussian schedule in diffusers' DDPMScheduler keys (null for families without one). The
    /// schedules map exactly: linear is diffusers' "linear" (betas evenly spaced from beta_start to
    /// beta_end), cosine is "squaredcos_cap_v2" (Nichol &amp; Dhariwal, β capped at 0.999), and a
    /// custom ᾱ becomes trained_betas. The networks take level t = timestep + udm_level_offset.
    /// </summary>
    public static JsonObject? SchedulerConfig(ExperimentConfig config)
    {
        if (config.Family is not ("gaussian" or "encoding")) return null;
        var schedule = config.Schedule;
        var json = new JsonObject
        {
            ["_class_name"] = "DDPMScheduler",
            ["num_train_timesteps"] = schedule.Levels,
            ["beta_start"] = schedule.BetaStart,
            ["beta_end"] = schedule.BetaEnd,
            ["beta_schedule"] = schedule.Kind switch { ScheduleKind.Linear => "linear", ScheduleKind.Cosine => "squaredcos_cap_v2", _ => "linear" },
            ["prediction_type"] = config.Prediction switch { PredictionType.Epsilon => "epsilon", PredictionType.Sample => "sample", _ => "v_prediction" },
            ["clip_sample"] = config.ClipSample is not null,
            ["clip_sample_range"] = config.ClipSample ?? 1.0,
            ["variance_type"] = "fixed_small",
            ["timestep_spacing"] = "leading",
            ["udm_level_offset"] = LevelOffset,
        };
        if (schedule.Kind == ScheduleKind.Custom)
        {
            var noise = NoiseSchedule.Create(schedule);
            var betas = new JsonArray();
            for (int t = 1; t <= schedule.Levels; t++)
                betas.Add(1 - Math.Pow(noise.Signal(t), 2) / Math.Pow(noise.Signal(t - 1), 2));
            json["trained_betas"] = betas;
        }
        return json;
    }

    private static string ModelCard(Experiment experiment, string? trainingLog, string checksum, IReadOnlyList<TrainingSession> sessions,
        IReadOnlyList<EvaluationRecord> evaluations, string? notes, string name)
    {
        var config = experiment.Config;
        var training = config.Training;
        var network = experiment.Model.Network;
        var card = new StringBuilder();
        // The notes' own title (a first line "# …") names the model; their text follows the facts table.
        string? title = notes?.Split('\n').FirstOrDefault()?.Trim() is { } first && first.StartsWith("# ", StringComparison.Ordinal) ? first[2..].Trim() : null;
        string? body = title is null ? notes?.Trim() : string.Join('\n', notes!.Split('\n').Skip(1)).Trim();
        card.AppendLine(CultureInfo.InvariantCulture, $"# {title ?? $"{config.Family} diffusion on {config.Data}"}");
        card.AppendLine();
        card.AppendLine("Exported by `udm export` from UnifiedDiffusion, the unified diffusion model (UDM) in C#.");
        card.AppendLine();
        card.AppendLine("| | |");
        card.AppendLine("|---|---|");
        card.AppendLine(CultureInfo.InvariantCulture, $"| family | {config.Family} |");
        card.AppendLine(CultureInfo.InvariantCulture, $"| data | {config.Data} |");
        card.AppendLine(CultureInfo.InvariantCulture, $"| network | {(network as ITwinNetwork)?.TwinModel ?? network.GetName()}, {NetworkInfo.ParameterCount(network):N0} parameters |");
        card.AppendLine(CultureInfo.InvariantCulture, $"| training | {experiment.Step:N0} of {training.Steps:N0} steps at batch {training.BatchSize}, peak learning rate {training.LearningRate}, seed {training.Seed}, precision {config.Precision ?? "fp32"} |");
        if (sessions.Count > 0)
            card.AppendLine(CultureInfo.InvariantCulture, $"| wall time | {Duration(RunRecords.TrainingSeconds(sessions))} in {sessions.Count} session{(sessions.Count == 1 ? "" : "s")}, {string.Join("; ", sessions.Select(q => $"{q.Cpu}, {q.Threads} thread{(q.Threads == 1 ? "" : "s")}").Distinct())} |");
        if (trainingLog is not null) card.AppendLine(CultureInfo.InvariantCulture, $"| training log | {trainingLog} |");
        card.AppendLine(CultureInfo.InvariantCulture, $"| weights | `{Files.Weights}`: the EMA weights, float32, {ChecksumLabel} `{checksum}` |");
        card.AppendLine();
        if (!string.IsNullOrEmpty(body))
        {
            card.AppendLine(body);
            card.AppendLine();
        }
        if (sessions.Count > 0)
        {
            card.AppendLine(CultureInfo.InvariantCulture, $"## Training (`{RunRecords.TrainingFile}`)");
            card.AppendLine();
            card.AppendLine("| started (UTC) | steps | wall time | precision | command |");
            card.AppendLine("|---|---|---|---|---|");
            foreach (var q in sessions)
                card.AppendLine(CultureInfo.InvariantCulture, $"| {q.StartedUtc:yyyy-MM-dd HH:mm} | {q.FirstStep:N0} → {q.LastStep:N0} | {Duration(q.Seconds)} | {q.Precision} | `{q.Command ?? "(library call)"}` |");
            card.AppendLine();
        }
        if (evaluations.Count > 0)
        {
            card.AppendLine(CultureInfo.InvariantCulture, $"## Evaluation (`{RunRecords.EvaluationFile}`)");
            card.AppendLine();
            card.AppendLine("`RUN` is this model imported as a run (`udm import THIS_FOLDER --out RUN`), or use `--model NAME` in place of `--run RUN`. The `data` row is held-out data through the same metric.");
            foreach (var record in evaluations)
            {
                card.AppendLine();
                card.AppendLine(CultureInfo.InvariantCulture, $"`{record.Command}` ({record.DateUtc:yyyy-MM-dd}, {record.Cpu})");
                card.AppendLine();
                card.Append(MetricsTables.Markdown(record.Rows.Select(MetricsTables.Unflatten)));
            }
            card.AppendLine();
        }
        card.AppendLine("## Use");
        card.AppendLine();
        card.AppendLine("```bash");
        card.AppendLine(CultureInfo.InvariantCulture, $"udm sample --model {name} --out samples{experiment.Model.Modality.SampleExtension}   # in a clone of the repository, when the model ships in models/");
        card.AppendLine("udm import THIS_FOLDER --out runs/imported     # elsewhere: a run that `udm sample` and `udm eval` take");
        card.AppendLine("udm sample --run runs/imported --out samples" + experiment.Model.Modality.SampleExtension);
        card.AppendLine("```");
        card.AppendLine();
        card.AppendLine("In PyTorch (`interop/pytorch` of the UnifiedDiffusion repository): `network, config = udm_torch.load(\"THIS_FOLDER\")`.");
        if (SchedulerConfig(config) is not null)
        {
            card.AppendLine();
            card.AppendLine($"`{Files.Scheduler}` holds the noise schedule in diffusers' DDPMScheduler keys. The network takes the UDM level t = 1..T,");
            card.AppendLine($"which is diffusers' timestep t − 1: call it with `timestep + {LevelOffset}`.");
        }
        card.AppendLine();
        card.AppendLine("## Training config");
        card.AppendLine();
        card.AppendLine("Train the same model again with `udm train config.json --out RUN` after saving the `experiment` object of `config.json` as its own file:");
        card.AppendLine();
        card.AppendLine("```json");
        card.AppendLine(config.ToJson());
        card.AppendLine("```");
        return card.ToString();
    }

    /// <summary>Wall time as "2 h 41 min", "12 min 5 s" or "40 s".</summary>
    private static string Duration(double seconds)
    {
        var t = TimeSpan.FromSeconds(Math.Round(seconds));
        return t.TotalHours >= 1 ? $"{(int)t.TotalHours} h {t.Minutes} min" : t.TotalMinutes >= 1 ? $"{t.Minutes} min {t.Seconds} s" : $"{t.Seconds} s";
    }

    /// <summary>Builds a folder in a hidden sibling, then renames it into place: it appears whole or not at all.</summary>
    private static void WriteWhole(string folder, Action<string> write)
    {
        string full = Path.GetFullPath(folder);
        string parent = Path.GetDirectoryName(full) ?? throw new UdmException($"{folder} has no parent folder.") { Subject = "out" };
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(staging);
            write(staging);
            if (Directory.Exists(full)) Directory.Delete(full, recursive: true);
            Directory.Move(staging, full);
        }
        finally
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }
}
