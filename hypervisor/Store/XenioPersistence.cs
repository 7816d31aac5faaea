using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace XenIo.Hypervisor.Store;

/// <summary>One persisted node of /xenio: its path, value (text, or base64 when not UTF-8) and permissions.</summary>
public sealed record XenioNodeRecord(string Path, string? Value, string? ValueBase64, string[] Perms)
{
    private static readonly UTF8Encoding s_strictUtf8 = new(false, true);

    internal static XenioNodeRecord From(string path, byte[] value, XenstorePermission[] perms)
    {
        var p = perms.Select(x => x.ToString()).ToArray();
        try
        {
            return new XenioNodeRecord(path, s_strictUtf8.GetString(value), null, p);
        }
        catch (DecoderFallbackException)
        {
            return new XenioNodeRecord(path, null, Convert.ToBase64String(value), p);
        }
    }

    internal bool TryGetValue(out byte[] value)
    {
        value = [];
        if (ValueBase64 is not null)
        {
            try { value = Convert.FromBase64String(ValueBase64); return value.Length <= Abi.XenstoreLimits.PayloadMax; }
            catch (FormatException) { return false; }
        }
        value = Encoding.UTF8.GetBytes(Value ?? "");
        return value.Length <= Abi.XenstoreLimits.PayloadMax;
    }

    internal bool TryGetPerms(out XenstorePermission[] perms)
    {
        perms = new XenstorePermission[Perms?.Length ?? 0];
        if (perms.Length == 0) return false;
        for (var i = 0; i < perms.Length; i++)
            if (Perms![i] is not { } text || !XenstorePermission.TryParse(text, out perms[i])) return false;
        return true;
    }
}

/// <summary>The file <c>&lt;state&gt;/xenstore-xenio.json</c>.</summary>
public sealed record XenioStateFile(int Version, List<XenioNodeRecord> Nodes);

[JsonSourceGenerationOptions(WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(XenioStateFile))]
internal sealed partial class XenioJsonContext : JsonSerializerContext;

/// <summary>
/// Keeps the /xenio subtree (the switch configuration) in the state directory: written after each change
/// by a background writer that coalesces bursts, atomically (temp file, fsync, rename), and read at start.
/// </summary>
public sealed class XenioPersistence : IAsyncDisposable
{
    public const string FileName = "xenstore-xenio.json";

    private readonly string _path;
    private readonly ILogger _logger;
    private readonly AsyncSignal _changed = new();
    private readonly object _gate = new();
    private IReadOnlyList<XenioNodeRecord>? _latest;
    private readonly Task _writer;
    private long _writes;

    public XenioPersistence(string stateDirectory, ILogger? logger = null)
    {
        Directory.CreateDirectory(stateDirectory);
        _path = Path.Combine(stateDirectory, FileName);
        _logger = logger ?? NullLogger.Instance;
        _writer = Task.Run(WriteLoopAsync);
    }

    public string FilePath => _path;

    /// <summary>Files written so far (tests wait on it).</summary>
    public long Writes => Interlocked.Read(ref _writes);

    public IReadOnlyList<XenioNodeRecord> Load()
    {
        if (!File.Exists(_path)) return [];
        try
        {
            using var stream = File.OpenRead(_path);
            var state = JsonSerializer.Deserialize(stream, XenioJsonContext.Default.XenioStateFile);
            return state?.Nodes ?? [];
        }
        catch (Exception e) when (e is JsonException or IOException)
        {
            _logger.LogError("xenstored: cannot read {Path}: {Reason}; starting with an empty /xenio", _path, e.Message);
            return [];
        }
    }

    /// <summary>Hands over the latest snapshot; the writer saves the newest one it finds.</summary>
    public void Schedule(IReadOnlyList<XenioNodeRecord> snapshot)
    {
        lock (_gate) _latest = snapshot;
        _changed.Set();
    }

    private async Task WriteLoopAsync()
    {
        while (await _changed.WaitAsync().ConfigureAwait(false)) Flush();
        Flush();
    }

    private void Flush()
    {
        IReadOnlyList<XenioNodeRecord>? snapshot;
        lock (_gate)
        {
            snapshot = _latest;
            _latest = null;
        }
        if (snapshot is null) return;
        try
        {
            var temp = _path + ".tmp";
            using (var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                JsonSerializer.Serialize(file, new XenioStateFile(1, [.. snapshot]), XenioJsonContext.Default.XenioStateFile);
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, _path, overwrite: true);
            Interlocked.Increment(ref _writes);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _logger.LogError("xenstored: cannot save {Path}: {Reason}", _path, e.Message);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _changed.Close();
        await _writer.ConfigureAwait(false);
    }
}
