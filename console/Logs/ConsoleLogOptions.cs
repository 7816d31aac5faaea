namespace XenIo.Consoled.Logs;

/// <summary>How guest console logs are written (xenconsoled's <c>--log-dir</c>, <c>--timestamp</c>, <c>--replace-escape</c>).</summary>
public sealed class ConsoleLogOptions
{
    /// <summary>Directory for <c>guest-&lt;name&gt;.log</c>; null turns logging off.</summary>
    public string? Directory { get; set; }

    /// <summary>Prefix each line with <c>[YYYY-MM-DD HH:MM:SS] </c> (local time), xenconsoled's <c>--timestamp=guest</c> format.</summary>
    public bool Timestamps { get; set; }

    /// <summary>Write ESC (0x1b) as '.' so that <c>cat</c>ting a log cannot drive the reader's terminal.</summary>
    public bool ReplaceEscape { get; set; }

    /// <summary>Size at which the log is rotated; guests once filled host disks through their logs (XSA-180).</summary>
    public long MaxBytes { get; set; } = 16 * 1024 * 1024;

    /// <summary>How many rotated files (<c>.1</c> … <c>.N</c>) are kept.</summary>
    public int Rotations { get; set; } = 4;
}
