using System.Globalization;
using System.Runtime.InteropServices;
using static XenIo.Guest.Interop.Libc;

namespace XenIo.Guest.Init;

/// <summary>
/// PID 1's duty: collect the exit of init and of every orphan the kernel reparents to us. Always by
/// pid (waitpid(pid, WNOHANG) for init, and for each zombie child found in our own /proc), never
/// waitpid(-1): a wildcard wait would steal the status of any child a <c>Process</c> object or another
/// component waits for. Pids in <see cref="Exclude"/> are left to their owners.
/// </summary>
internal sealed class ChildReaper
{
    private readonly HashSet<int> _excluded = [];

    /// <summary>Children someone else reaps.</summary>
    public void Exclude(int pid)
    {
        lock (_excluded) _excluded.Add(pid);
    }

    /// <summary>Reaps <paramref name="pid"/> if it has exited; returns its wait status then.</summary>
    public static unsafe int? TryReap(int pid)
    {
        int status;
        while (true)
        {
            var rc = WaitPid(pid, &status, WNOHANG);
            if (rc == pid) return status;
            if (rc == 0) return null;
            if (Marshal.GetLastPInvokeError() == EINTR) continue;
            return null;
        }
    }

    /// <summary>Reaps every zombie child of this process that is not excluded; returns how many.</summary>
    public int ReapOrphans()
    {
        var reaped = 0;
        var self = Environment.ProcessId;
        foreach (var pid in ZombieChildren(self))
        {
            lock (_excluded) if (_excluded.Contains(pid)) continue;
            if (TryReap(pid) is not null) reaped++;
        }
        return reaped;
    }

    /// <summary>Children of <paramref name="parent"/> (in this /proc) that are zombies, from /proc/&lt;pid&gt;/stat.</summary>
    internal static List<int> ZombieChildren(int parent)
    {
        var found = new List<int>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)) continue;
            string stat;
            try { stat = File.ReadAllText(Path.Combine(dir, "stat")); }
            catch (IOException) { continue; }
            // "pid (comm) S ppid …": comm may hold spaces and parentheses, so parse after the last ')'.
            var close = stat.LastIndexOf(')');
            if (close < 0 || close + 4 > stat.Length) continue;
            var fields = stat.AsSpan(close + 2);
            var state = fields[0];
            var rest = fields[2..];
            var end = rest.IndexOf(' ');
            if (end < 0) continue;
            if (state == 'Z' && int.TryParse(rest[..end], NumberStyles.None, CultureInfo.InvariantCulture, out var ppid) && ppid == parent)
                found.Add(pid);
        }
        return found;
    }

    /// <summary>Decodes a wait status: (exit code, null) or (null, signal).</summary>
    public static (int? Exit, int? Signal) Decode(int status) =>
        (status & 0x7f) == 0 ? ((status >> 8) & 0xff, null) : (null, status & 0x7f);
}
