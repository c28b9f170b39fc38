using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace UnifiedDiffusion.Core;

/// <summary>Everything needed to continue a training run exactly.</summary>
/// <param name="Step">Optimizer steps taken.</param>
/// <param name="ConfigJson">The run's model-defining configuration (JSON).</param>
/// <param name="Model">Network weights (TorchSharp module format).</param>
/// <param name="Ema">EMA weights (same format).</param>
/// <param name="Optimizer">Optimizer state.</param>
/// <param name="Rng">State of the training generator (batches, levels, noise).</param>
/// <param name="Losses">The loss of every step so far.</param>
public sealed record CheckpointState(long Step, string ConfigJson, byte[] Model, byte[] Ema, byte[] Optimizer, byte[] Rng, float[] Losses);

/// <summary>
/// The checkpoint file: a magic line, a JSON header (step, config, section lengths and SHA-256),
/// then the binary sections. Written atomically; a torn, truncated or foreign file is detected on
/// load and reported as a <see cref="UdmException"/>.
/// </summary>
public static class Checkpoint
{
    private static readonly byte[] Magic = "UDMCKPT1\n"u8.ToArray();

    /// <summary>The checkpoint's file name inside a run folder.</summary>
    public const string FileName = "checkpoint.udm";

    /// <summary>The folder of a run that holds the checkpoints kept along training (<see cref="TrainingOptions.KeepEvery"/>).</summary>
    public const string KeptFolder = "checkpoints";

    /// <summary>The kept checkpoint of <paramref name="step"/>: checkpoints/step-0004000.udm.</summary>
    public static string KeptPath(string runDir, long step) => Path.Combine(runDir, KeptFolder, $"step-{step:D7}.udm");

    /// <summary>The kept checkpoints of a run, by step.</summary>
    public static IReadOnlyList<(long Step, string Path)> Kept(string runDir) =>
        Directory.Exists(Path.Combine(runDir, KeptFolder))
            ? [.. Directory.EnumerateFiles(Path.Combine(runDir, KeptFolder), "step-*.udm")
                .Select(f => (Step: long.TryParse(Path.GetFileNameWithoutExtension(f)["step-".Length..], out long step) ? step : -1, Path: f))
                .Where(e => e.Step >= 0).OrderBy(e => e.Step)]
            : [];

    /// <summary>Writes <paramref name="state"/> to <paramref name="path"/> atomically (temporary file, then rename).</summary>
    public static void Save(string path, CheckpointState state) => AtomicFile.Write(path, stream => Write(stream, state));

    internal static void Write(Stream stream, CheckpointState state)
    {
        var losses = new byte[state.Losses.Length * sizeof(float)];
        Buffer.BlockCopy(state.Losses, 0, losses, 0, losses.Length);
        byte[][] sections = [state.Model, state.Ema, state.Optimizer, state.Rng, losses];
        var header = new Header(state.Step, state.ConfigJson,
            sections.Select(s => (long)s.Length).ToArray(),
            Convert.ToHexString(SHA256.HashData(Concat(sections))));
        var headerBytes = JsonSerializer.SerializeToUtf8Bytes(header);
        stream.Write(Magic);
        stream.Write(BitConverter.GetBytes(headerBytes.Length));
        stream.Write(headerBytes);
        foreach (var s in sections) stream.Write(s);
    }

    /// <summary>Reads a checkpoint, verifying its structure and checksum.</summary>
    public static CheckpointState Load(string path)
    {
        if (!File.Exists(path))
            throw new UdmException($"no checkpoint at {path}: its training stopped before the first one; train it again with `udm train {Path.Combine(Path.GetDirectoryName(path) ?? ".", "config.json")} --out {Path.GetDirectoryName(path)}`.");
        byte[] bytes;
        try { bytes = File.ReadAllBytes(path); }
        catch (IOException e) { throw new UdmException($"cannot read checkpoint {path}: {e.Message}", e); }
        string bad = $"checkpoint {path} is corrupt or truncated; restore it from a copy or retrain with `udm train`.";
        if (bytes.Length < Magic.Length + 4 || !bytes.AsSpan(0, Magic.Length).SequenceEqual(Magic))
            throw new UdmException($"{path} is not a UnifiedDiffusion checkpoint (bad header); give the folder that `udm train` wrote.");
        int headerLength = BitConverter.ToInt32(bytes, Magic.Length);
        int offset = Magic.Length + 4;
        if (headerLength <= 0 || (long)offset + headerLength > bytes.Length) throw new UdmException(bad);
        Header? header;
        try { header = JsonSerializer.Deserialize<Header>(bytes.AsSpan(offset, headerLength)); }
        catch (JsonException e) { throw new UdmException(bad, e); }
        if (header?.Sections is not { Length: 5 } || header.Config is null || header.Sha256 is null) throw new UdmException(bad);
        offset += headerLength;
        // Each length is checked before summing, so a corrupt header can neither overflow nor over-read.
        if (header.Sections.Any(n => n < 0 || n > bytes.Length) || offset + header.Sections.Sum() != bytes.Length) throw new UdmException(bad);
        var sections = new byte[5][];
        for (int i = 0; i < 5; i++)
        {
            sections[i] = bytes.AsSpan(offset, (int)header.Sections[i]).ToArray();
            offset += (int)header.Sections[i];
        }
        if (Convert.ToHexString(SHA256.HashData(Concat(sections))) != header.Sha256) throw new UdmException(bad);
        var losses = new float[sections[4].Length / sizeof(float)];
        Buffer.BlockCopy(sections[4], 0, losses, 0, sections[4].Length);
        return new CheckpointState(header.Step, header.Config, sections[0], sections[1], sections[2], sections[3], losses);
    }

    private static byte[] Concat(byte[][] parts)
    {
        var all = new byte[parts.Sum(p => p.Length)];
        int o = 0;
        foreach (var p in parts) { p.CopyTo(all, o); o += p.Length; }
        return all;
    }

    private sealed record Header(long Step, string Config, long[] Sections, string Sha256);
}
