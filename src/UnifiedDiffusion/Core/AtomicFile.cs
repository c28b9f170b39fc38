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
        RemoveStale(full);
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

    /// <summary>
    /// Deletes temporary files of earlier writes to <paramref name="full"/> whose process no longer
    /// runs (killed mid-write): their names carry the writer's PID. A live writer's file is kept.
    /// </summary>
    private static void RemoveStale(string full)
    {
        string folder = Path.GetDirectoryName(full)!, prefix = Path.GetFileName(full) + ".tmp-";
        foreach (var temp in Directory.EnumerateFiles(folder, prefix + "*"))
        {
            string rest = Path.GetFileName(temp)[prefix.Length..];
            int dash = rest.IndexOf('-');
            if (dash > 0 && int.TryParse(rest[..dash], out int pid) && pid != Environment.ProcessId && !ProcessRuns(pid))
                try { File.Delete(temp); } catch (IOException) { } // another process may be cleaning up too
        }
    }

    /// <summary>True when a process with this id runs (on Linux, /proc tells without permissions).</summary>
    internal static bool ProcessRuns(int pid)
    {
        if (OperatingSystem.IsLinux()) return Directory.Exists($"/proc/{pid}");
        try { using var process = System.Diagnostics.Process.GetProcessById(pid); return !process.HasExited; }
        catch (ArgumentException) { return false; }
    }

    /// <summary>Atomically writes text.</summary>
    public static void WriteAllText(string path, string text) =>
        Write(path, s => { using var w = new StreamWriter(s, leaveOpen: true); w.Write(text); });
}
