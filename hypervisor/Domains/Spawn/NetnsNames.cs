using System.Runtime.InteropServices;
using XenIo.Hypervisor.Interop;
using static XenIo.Hypervisor.Interop.Libc.Proc;

namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>
/// Names a domain's network namespace in <c>ip netns</c> the way iproute2 does, so
/// <c>ip netns exec web …</c> reaches the guest's network: /run/netns is made a shared mount point
/// (bind-mounted onto itself if it is not a mount yet), and /proc/&lt;pid&gt;/ns/net is bind-mounted onto
/// an empty file /run/netns/&lt;name&gt;. The bind mount also keeps the namespace alive, so removal matters.
/// </summary>
public static class NetnsNames
{
    public const string Directory = "/run/netns";

    public static string PathOf(string name) => System.IO.Path.Combine(Directory, name);

    /// <summary>Names the network namespace of process <paramref name="pid"/> as <paramref name="name"/>.</summary>
    public static void Attach(string name, int pid)
    {
        if (!KernelNames.IsValid(name)) throw new ArgumentException($"'{name}' is not a valid namespace name", nameof(name));
        System.IO.Directory.CreateDirectory(Directory);
        MakeShared();
        var target = PathOf(name);
        try
        {
            using (new FileStream(target, FileMode.CreateNew, FileAccess.Write)) { }
        }
        catch (IOException) when (File.Exists(target))
        {
            throw new InvalidOperationException($"network namespace name '{name}' is already in use ({target})");
        }
        if (Mount($"/proc/{pid}/ns/net", target, "none", MS_BIND, null) != 0)
        {
            var err = Marshal.GetLastPInvokeErrorMessage();
            File.Delete(target);
            throw new IOException($"cannot bind /proc/{pid}/ns/net to {target}: {err}");
        }
    }

    private static void MakeShared()
    {
        if (Mount("none", Directory, null, MS_SHARED | MS_REC, null) == 0) return;
        if (Marshal.GetLastPInvokeError() != EINVAL)
            throw new IOException($"cannot make {Directory} shared: {Marshal.GetLastPInvokeErrorMessage()}");
        // Not a mount point yet: make it one, then shared (iproute2's netns_add does the same).
        if (Mount(Directory, Directory, "none", MS_BIND | MS_REC, null) != 0
            || Mount("none", Directory, null, MS_SHARED | MS_REC, null) != 0)
            throw new IOException($"cannot make {Directory} a shared mount point: {Marshal.GetLastPInvokeErrorMessage()}");
    }

    /// <summary>Removes the name (unmount and delete); returns false if there was none.</summary>
    public static bool Detach(string name)
    {
        var target = PathOf(name);
        if (!File.Exists(target)) return false;
        // MNT_DETACH: a process still inside (ip netns exec) must not make removal fail.
        if (Umount2(target, MNT_DETACH) != 0 && Marshal.GetLastPInvokeError() != EINVAL)
            throw new IOException($"cannot unmount {target}: {Marshal.GetLastPInvokeErrorMessage()}");
        File.Delete(target);
        return true;
    }

    /// <summary>Names under /run/netns with the instance's prefix (for cleanup after a crash).</summary>
    public static IReadOnlyList<string> List(string prefix)
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        var names = new List<string>();
        foreach (var f in System.IO.Directory.GetFiles(Directory))
        {
            var n = System.IO.Path.GetFileName(f);
            if (n.StartsWith(prefix, StringComparison.Ordinal)) names.Add(n);
        }
        return names;
    }
}
