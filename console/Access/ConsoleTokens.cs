using System.Security.Cryptography;
using System.Text;

namespace XenIo.Consoled.Access;

/// <summary>
/// One random token per console (128 bits, hex), the password of a console for anyone who is not an
/// administrator on this host. Kept in a file readable by its owner only (0600), one
/// <c>name token</c> per line, rewritten atomically on every change so the CLI can show them.
/// </summary>
public sealed class ConsoleTokens
{
    private readonly object _gate = new();
    private readonly Dictionary<string, string> _tokens = new(StringComparer.Ordinal);

    public ConsoleTokens(string? path)
    {
        Path = path;
        if (path is not null && File.Exists(path)) Load(path);
    }

    /// <summary>The token file; null keeps tokens in memory only.</summary>
    public string? Path { get; }

    private void Load(string path)
    {
        foreach (var line in File.ReadLines(path))
        {
            var parts = line.Split(' ', 2, StringSplitOptions.TrimEntries);
            if (parts.Length == 2 && parts[1].Length == 32 && IsHex(parts[1])) _tokens[parts[0]] = parts[1];
        }
    }

    private static bool IsHex(string s)
    {
        foreach (char c in s)
        {
            if (!char.IsAsciiHexDigit(c)) return false;
        }
        return true;
    }

    /// <summary>The console's token, created (and saved) on first use.</summary>
    public string GetOrCreate(string console)
    {
        lock (_gate)
        {
            if (_tokens.TryGetValue(console, out var token)) return token;
            token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(16));
            _tokens[console] = token;
            Save();
            return token;
        }
    }

    public void Remove(string console)
    {
        lock (_gate)
        {
            if (_tokens.Remove(console)) Save();
        }
    }

    /// <summary>Constant-time comparison of what a client typed with the console's token.</summary>
    public bool Verify(string console, ReadOnlySpan<byte> candidate)
    {
        string? token;
        lock (_gate) _tokens.TryGetValue(console, out token);
        if (token is null) return false;
        Span<byte> expected = stackalloc byte[token.Length];
        Encoding.ASCII.GetBytes(token, expected);
        Span<byte> lowered = stackalloc byte[Math.Min(candidate.Length, 64)];
        if (candidate.Length != expected.Length) return false;
        for (int i = 0; i < candidate.Length; i++) lowered[i] = (byte)char.ToLowerInvariant((char)candidate[i]);
        return CryptographicOperations.FixedTimeEquals(lowered[..candidate.Length], expected);
    }

    private void Save()
    {
        if (Path is null) return;
        var dir = System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!;
        Directory.CreateDirectory(dir);
        var temp = System.IO.Path.Combine(dir, $".{System.IO.Path.GetFileName(Path)}.{Environment.ProcessId}.tmp");
        var text = new StringBuilder();
        foreach (var (name, token) in _tokens) text.Append(name).Append(' ').Append(token).Append('\n');
        var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        using (var file = new FileStream(temp, options))
        {
            file.Write(Encoding.UTF8.GetBytes(text.ToString()));
        }
        // An existing temp file keeps its old mode under FileMode.Create; force it.
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        File.Move(temp, Path, overwrite: true);
    }
}
