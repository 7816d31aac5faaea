namespace XenIo.Hypervisor.Store.Client;

/// <summary>xenstored answered XS_ERROR.</summary>
public sealed class XenstoreException(XsError error, string operation, string? path)
    : Exception($"xenstore {operation}{(path is null ? "" : " " + path)}: {XsErrorNames.Name(error)}")
{
    public XsError Error { get; } = error;
    public string Operation { get; } = operation;
    public string? Path { get; } = path;
}

/// <summary>A watch fired: the path that changed (relative if the watch was relative) and the watch's token.</summary>
public readonly record struct XenstoreWatchEvent(string Path, string Token);
