namespace UnifiedDiffusion.Core;

/// <summary>
/// Writes files so that a crash or a kill at any moment leaves either the old file or the new one,
/// never a torn mix: write a temporary file in the same folder, flush it to disk, then rename.
/// </summary>
public static class AtomicFile
{
    /// <summary>Writes through <paramref name="write"/> into a temporary file, then renames it over <paramref name="path"/>.</summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        string temp = $"{full}.tmp-{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>Atomically writes text.</summary>
    public static void WriteAllText(string path, string text) =>
        Write(path, s => { using var w = new StreamWriter(s, leaveOpen: true); w.Write(text); });
}
