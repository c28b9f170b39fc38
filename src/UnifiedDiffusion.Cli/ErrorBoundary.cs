namespace UnifiedDiffusion.Cli;

/// <summary>
/// What the user can cause besides a <see cref="Core.UdmException"/>: file-system errors, said in one
/// line with what to do. Anything else is an internal error.
/// </summary>
internal static class ErrorBoundary
{
    // errno values as .NET reports them in IOException.HResult on Linux.
    private const int NoSuchFile = 2, PermissionDenied = 13, Exists = 17, NotADirectory = 20, IsADirectory = 21, NoSpace = 28, ReadOnly = 30, NameTooLong = 36;

    /// <summary>The exception behind wrappers (aggregate, type initialiser, reflection).</summary>
    public static Exception Unwrap(Exception e)
    {
        while (e is AggregateException { InnerExceptions.Count: 1 } or TypeInitializationException or System.Reflection.TargetInvocationException && e.InnerException is not null)
            e = e.InnerException!;
        return e;
    }

    /// <summary>The one-line message of an error the user can fix, or null for an internal error.</summary>
    public static string? Describe(Exception e) => FileInTheWay(e) is { } file
        ? $"a path goes through a file: {file} is a file, not a folder; fix the path."
        : DescribeByType(e);

    /// <summary>A file that stands where the failed path needs a folder, or null.</summary>
    private static string? FileInTheWay(Exception e)
    {
        if (e is not IOException) return null;
        var quoted = System.Text.RegularExpressions.Regex.Match(e.Message, "'([^']+)'");
        if (!quoted.Success) return null;
        for (string? dir = Path.GetDirectoryName(quoted.Groups[1].Value); !string.IsNullOrEmpty(dir); dir = Path.GetDirectoryName(dir))
            if (File.Exists(dir)) return dir;
        return (e.HResult & 0xFFFF) == Exists && File.Exists(quoted.Groups[1].Value) ? quoted.Groups[1].Value : null;
    }

    private static string? DescribeByType(Exception e) => e switch
    {
        UnauthorizedAccessException => $"permission denied: {FirstLine(e.Message)}; choose a folder you can write to, or change its permissions.",
        PathTooLongException => $"{FirstLine(e.Message)}; use a shorter path.",
        DirectoryNotFoundException => $"{FirstLine(e.Message)}: a folder on that path does not exist; create it first or fix the path.",
        FileNotFoundException f => $"file not found: {f.FileName ?? FirstLine(e.Message)}; check the path.",
        IOException io => (io.HResult & 0xFFFF) switch
        {
            NoSpace => $"no space left on the device ({FirstLine(e.Message)}); free some space and rerun (files are written whole, so the previous ones are intact).",
            ReadOnly => $"the file system is read-only ({FirstLine(e.Message)}); write to another folder.",
            NotADirectory or Exists => $"a path goes through a file where a folder should be ({FirstLine(e.Message)}); fix the path.",
            IsADirectory => $"a folder is in the way where a file should be written ({FirstLine(e.Message)}); choose another name.",
            PermissionDenied => $"permission denied ({FirstLine(e.Message)}); choose a folder you can write to.",
            NoSuchFile => $"{FirstLine(e.Message)}; check the path.",
            NameTooLong => $"{FirstLine(e.Message)}; use a shorter path.",
            _ => $"input/output error: {FirstLine(e.Message)}; check the disk and the path, then rerun.",
        },
        _ => null,
    };

    /// <summary>The first line of a message, without its trailing full stop.</summary>
    public static string FirstLine(string message) => message.Split('\n')[0].Trim().TrimEnd('.');
}
