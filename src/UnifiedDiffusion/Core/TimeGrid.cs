namespace UnifiedDiffusion.Core;

/// <summary>How the K sampling levels are spread over 1..T.</summary>
public enum TimeSpacing
{
    /// <summary>Uniform from the bottom: 1, 1+T/K, …, 1+(K−1)·T/K (DDIM's "uniform", diffusers' "leading").</summary>
    Leading,
    /// <summary>Uniform from the top: T, T−T/K, …, T/K (diffusers' "trailing"); always starts at T.</summary>
    Trailing,
    /// <summary>Quadratic: levels (i·√(0.8T)/(K−1))² + 1, dense near t = 0 (DDIM's "quad").</summary>
    Quadratic,
}

/// <summary>
/// Descending sampling grids <c>t_K &gt; … &gt; t_1 &gt; t_0 = 0</c>. Every grid ends at 0, and
/// consecutive entries may jump by any amount: that is what makes few-step sampling possible.
/// </summary>
public static class TimeGrid
{
    /// <summary>A descending grid of <paramref name="steps"/> reverse steps over levels 1..<paramref name="levels"/>, ending at 0.</summary>
    public static int[] Create(int levels, int steps, TimeSpacing spacing = TimeSpacing.Leading)
    {
        if (levels < 1) throw new UdmException($"the process has {levels} levels; it needs at least 1.");
        if (steps < 1 || steps > levels)
            throw new UdmException($"the step count {steps} is out of range: use 1..{levels} for a process with T = {levels}.") { Subject = "steps" };
        var set = new SortedSet<int>();
        for (int i = 0; i < steps; i++)
        {
            int t = spacing switch
            {
                TimeSpacing.Leading => 1 + (int)((long)i * levels / steps),
                TimeSpacing.Trailing => (int)Math.Round(levels - (double)i * levels / steps),
                // As the DDIM and Analytic-DPM code: int(linspace(0, √(0.8T), K)²) + 1.
                TimeSpacing.Quadratic => steps == 1 ? levels : 1 + (int)Math.Pow(i * (Math.Sqrt(0.8 * levels) / (steps - 1)), 2),
                _ => throw new ArgumentOutOfRangeException(nameof(spacing)),
            };
            set.Add(Math.Clamp(t, 1, levels));
        }
        // Quadratic spacing can collide at the bottom for large K; fill from above to keep K distinct levels.
        for (int t = levels; set.Count < steps && t >= 1; t--) set.Add(t);
        return set.Reverse().Append(0).ToArray();
    }

    /// <summary>
    /// An explicit grid: levels strictly descending within 1..T. A trailing 0 is added if missing.
    /// </summary>
    public static int[] Explicit(int levels, IEnumerable<int> descending)
    {
        var list = descending.ToList();
        if (list.Count == 0 || list[^1] != 0) list.Add(0);
        if (list.Count < 2) throw new UdmException("an explicit time grid needs at least one level above 0, e.g. \"999,500,0\".");
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] < 0)
                throw new UdmException($"time grid level {list[i]} is negative; give levels from T down to 0, e.g. \"999,500,0\".") { Subject = "grid" };
            if (list[i] > levels)
                throw new UdmException($"time grid level {list[i]} is outside 0..{levels}; give levels of this process.") { Subject = "grid" };
            if (i > 0 && list[i] >= list[i - 1])
                throw new UdmException($"time grid must be strictly descending, but {list[i - 1]} is followed by {list[i]}.");
        }
        return list.ToArray();
    }

    /// <summary>True for a spacing name (leading, uniform, trailing, quadratic, quad); false for an explicit list.</summary>
    public static bool IsSpacingName(string spec) =>
        spec.Trim().ToLowerInvariant() is "leading" or "uniform" or "trailing" or "quadratic" or "quad";

    /// <summary>
    /// Parses a spacing name (<c>leading</c>, <c>trailing</c>, <c>quadratic</c>) or an explicit
    /// comma-separated list of levels.
    /// </summary>
    public static int[] Parse(string spec, int levels, int steps)
    {
        switch (spec.Trim().ToLowerInvariant())
        {
            case "leading" or "uniform": return Create(levels, steps, TimeSpacing.Leading);
            case "trailing": return Create(levels, steps, TimeSpacing.Trailing);
            case "quadratic" or "quad": return Create(levels, steps, TimeSpacing.Quadratic);
        }
        var parts = spec.Split(',', StringSplitOptions.TrimEntries);
        var values = new List<int>();
        foreach (var p in parts)
        {
            if (p.Length == 0)
                throw new UdmException($"time grid \"{spec}\" has an empty item; separate levels by single commas, e.g. \"999,500,0\".") { Subject = "grid" };
            if (!int.TryParse(p, out int v))
                throw new UdmException($"unknown time grid \"{spec}\": use leading, trailing, quadratic or a list such as \"999,500,0\".");
            values.Add(v);
        }
        return Explicit(levels, values);
    }
}
