namespace UnifiedDiffusion.Core;

/// <summary>
/// One writer per run folder: a lock file holding the writer's process id, created exclusively and
/// deleted on <see cref="Dispose"/>. A lock whose process no longer runs (killed) is stale and taken
/// over; a live one makes the second writer stop with a one-line error naming the process.
/// </summary>
public sealed class RunLock : IDisposable
{
    /// <summary>The lock file's name inside the run folder.</summary>
    public const string FileName = ".udm-lock";

    private readonly string _path;

    private RunLock(string path) => _path = path;

    /// <summary>Takes the lock of <paramref name="runDirectory"/> (which must exist).</summary>
    public static RunLock Acquire(string runDirectory)
    {
        string path = Path.Combine(runDirectory, FileName);
        for (int attempt = 0; attempt < 3; attempt++)
        {
            FileStream stream;
            try { stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read); }
            catch (IOException) when (File.Exists(path))
            {
                string text;
                try { text = File.ReadAllText(path).Trim(); }
                catch (IOException) { continue; } // released between the two calls
                if (int.TryParse(text, out int pid) && (pid == Environment.ProcessId || AtomicFile.ProcessRuns(pid)))
                    throw new UdmException($"{runDirectory} is in use by process {pid} (another training into it); wait for it to finish or stop it (kill {pid}), or train into another folder.") { Subject = "out" };
                File.Delete(path); // stale: its process was killed (or an empty file from a failed write)
                continue;
            }
            try
            {
                using (stream)
                using (var writer = new StreamWriter(stream)) writer.Write(Environment.ProcessId);
                return new RunLock(path);
            }
            catch (IOException)
            {
                File.Delete(path); // a full disk: leave no empty lock behind, and report the write's error
                throw;
            }
        }
        throw new UdmException($"cannot take the lock {path}; another process keeps creating it.") { Subject = "out" };
    }

    /// <summary>Releases the lock.</summary>
    public void Dispose()
    {
        try { File.Delete(_path); } catch (IOException) { }
    }
}
