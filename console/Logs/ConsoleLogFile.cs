using System.Globalization;
using Microsoft.Extensions.Logging;

namespace XenIo.Consoled.Logs;

/// <summary>
/// One guest's console log, <c>guest-&lt;name&gt;.log</c>: optional per-line timestamps (a line's stamp is
/// written when its first byte arrives, as xenconsoled does), optional ESC replacement, and a size cap
/// after which the file is rotated to <c>.1</c>, <c>.1</c> to <c>.2</c> and so on, so a guest can fill at
/// most <c>MaxBytes × (Rotations + 1)</c> of the host's disk. Not thread-safe: the console's output pump
/// is its only writer.
/// </summary>
public sealed class ConsoleLogFile : IDisposable
{
    private const int TimestampLength = 22; // "[2026-11-23 20:09:17] "
    private readonly ConsoleLogOptions _options;
    private readonly ILogger _logger;
    private readonly byte[] _scratch;
    private FileStream? _file;
    private long _size;
    private bool _atLineStart = true;
    private bool _failing;

    public ConsoleLogFile(string path, ConsoleLogOptions options, ILogger logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxBytes, 1024);
        ArgumentOutOfRangeException.ThrowIfNegative(options.Rotations);
        Path = path;
        _options = options;
        _logger = logger;
        _scratch = new byte[64 * 1024];
        Open();
    }

    public string Path { get; }

    /// <summary>The log file name xenconsoled uses for a guest, with anything path-like made harmless.</summary>
    public static string FileNameFor(string consoleName)
    {
        Span<char> name = stackalloc char[Math.Min(consoleName.Length, 128)];
        for (int i = 0; i < name.Length; i++)
        {
            char c = consoleName[i];
            name[i] = char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_';
        }
        if (name.Length == 0 || name[0] == '.') return $"guest-_{name}.log";
        return $"guest-{name}.log";
    }

    public void Write(ReadOnlySpan<byte> data)
    {
        while (!data.IsEmpty)
        {
            // Worst case each input byte becomes a timestamp plus itself.
            int take = Math.Min(data.Length, _scratch.Length / (_options.Timestamps ? TimestampLength + 1 : 1));
            int n = Transform(data[..take], _scratch);
            Append(_scratch.AsSpan(0, n));
            data = data[take..];
        }
        try
        {
            _file?.Flush();
        }
        catch (IOException e)
        {
            Fail(e);
        }
    }

    private int Transform(ReadOnlySpan<byte> data, Span<byte> output)
    {
        int o = 0;
        foreach (byte raw in data)
        {
            if (_options.Timestamps && _atLineStart)
            {
                o += WriteTimestamp(output[o..]);
                _atLineStart = false;
            }
            output[o++] = raw == 0x1b && _options.ReplaceEscape ? (byte)'.' : raw;
            if (raw == (byte)'\n') _atLineStart = true;
        }
        return o;
    }

    private static int WriteTimestamp(Span<byte> output)
    {
        var now = DateTime.Now;
        now.TryFormat(output, out int n, "[yyyy-MM-dd HH:mm:ss] ", CultureInfo.InvariantCulture);
        return n;
    }

    private void Append(ReadOnlySpan<byte> bytes)
    {
        if (_size + bytes.Length > _options.MaxBytes && _size > 0) Rotate();
        if (_file is null) return;
        try
        {
            _file.Write(bytes);
            _size += bytes.Length;
            _failing = false;
        }
        catch (IOException e)
        {
            Fail(e);
        }
    }

    private void Rotate()
    {
        _file?.Dispose();
        _file = null;
        try
        {
            if (_options.Rotations == 0)
            {
                File.Delete(Path);
            }
            else
            {
                File.Delete($"{Path}.{_options.Rotations}");
                for (int i = _options.Rotations - 1; i >= 1; i--)
                {
                    if (File.Exists($"{Path}.{i}")) File.Move($"{Path}.{i}", $"{Path}.{i + 1}");
                }
                File.Move(Path, $"{Path}.1");
            }
        }
        catch (IOException e)
        {
            Fail(e);
        }
        Open();
    }

    /// <summary>Closes and reopens the file (after an outside rotation, xenconsoled's SIGHUP).</summary>
    public void Reopen()
    {
        _file?.Dispose();
        _file = null;
        Open();
    }

    private void Open()
    {
        try
        {
            var options = new FileStreamOptions
            {
                Mode = FileMode.Append,
                Access = FileAccess.Write,
                Share = FileShare.Read | FileShare.Delete,
                BufferSize = 0,
            };
            if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead;
            _file = new FileStream(Path, options);
            _size = _file.Length;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            Fail(e);
        }
    }

    private void Fail(Exception e)
    {
        if (_failing) return;
        _failing = true;
        _logger.LogWarning("console log {Path}: {Error}", Path, e.Message);
    }

    public void Dispose()
    {
        _file?.Dispose();
        _file = null;
    }
}
