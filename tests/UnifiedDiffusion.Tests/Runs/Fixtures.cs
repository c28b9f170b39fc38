using UnifiedDiffusion.Data;

namespace UnifiedDiffusion.Tests.Runs;

/// <summary>Small data sets the run tests write for themselves.</summary>
internal static class Fixtures
{
    /// <summary>
    /// An IDX folder of 8×8 images of two classes (a bright left or right half, with noise):
    /// <paramref name="train"/> training and <paramref name="test"/> test images, made once per folder.
    /// </summary>
    public static string ImageFolder(string root, int train = 64, int test = 32)
    {
        string folder = Path.Combine(root, "idx");
        if (Directory.Exists(folder)) return folder;
        Directory.CreateDirectory(folder);
        var random = new Random(3);
        foreach (var (prefix, count) in new[] { ("train", train), ("t10k", test) })
        {
            var pixels = new byte[count * 64];
            var labels = new byte[count];
            for (int i = 0; i < count; i++)
            {
                labels[i] = (byte)(i % 2);
                for (int p = 0; p < 64; p++)
                    pixels[i * 64 + p] = (byte)((p % 8 < 4) == (labels[i] == 0) ? 200 + random.Next(50) : random.Next(50));
            }
            Idx.WriteImages(Path.Combine(folder, $"{prefix}-images-idx3-ubyte"), new IdxImages(pixels, count, 8, 8));
            Idx.WriteLabels(Path.Combine(folder, $"{prefix}-labels-idx1-ubyte"), labels);
        }
        return folder;
    }

    /// <summary>A plain-text file of <paramref name="words"/> random words from a ten-word vocabulary, made once per folder.</summary>
    public static string TextFile(string root, int words = 3000)
    {
        string path = Path.Combine(root, "corpus.txt");
        if (File.Exists(path)) return path;
        var random = new Random(5);
        string[] vocabulary = ["the", "whale", "sea", "ship", "call", "me", "ishmael", "white", "captain", "ahab"];
        File.WriteAllText(path, string.Join(' ', Enumerable.Range(0, words).Select(_ => vocabulary[random.Next(vocabulary.Length)])));
        return path;
    }
}
