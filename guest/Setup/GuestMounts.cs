using System.Runtime.InteropServices;
using static XenIo.Guest.Interop.Libc;

namespace XenIo.Guest.Setup;

/// <summary>
/// Builds the guest's view of the file system inside its private mount namespace. The guest shares the
/// host's root (its /usr, /bin, /etc and, under isolation=host, /dev for losetup) and gets its own
/// /proc (its pid namespace), /sys (its network namespace), a new /dev/pts instance with /dev/ptmx
/// pointing at it, and empty tmpfs on /run, /tmp and /dev/shm. Host directories that must stay
/// unreachable (the run and state directories) are covered by an empty read-only tmpfs; those under
/// /run or /tmp are already gone with the fresh tmpfs. The host's /run/netns names of other guests are
/// detached first so a guest cannot enter their network namespaces.
/// <para>
/// Why overmounts rather than pivot_root into a prepared root: it needs no per-domain tree and no
/// bind mounts of /usr etc., and the guest sees the host's programs as they are. Under isolation=host
/// guest root could unmount the covers (it is a trusted workload, see the security model); under
/// isolation=userns the covers of inherited mounts cannot be lifted to reveal locked mounts, and the
/// run directory's own 0700 permissions bar guest root, which is an unprivileged host uid.
/// </para>
/// </summary>
internal static class GuestMounts
{
    public static void Apply(IReadOnlyList<string> hiddenPaths, bool userns, Action<string> log)
    {
        // unshare --propagation private already did this; nothing below must ever reach the host.
        Must(Mount(null, "/", null, MS_REC | MS_PRIVATE, null), "make / private");
        Umount2("/run/netns", MNT_DETACH);

        // In a user namespace the inherited /proc and /sys are locked (cannot be detached); the new ones
        // go on top. As real root they are detached first so nothing of the host's stays below.
        Umount2("/proc", MNT_DETACH);
        Must(Mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, null), "mount /proc");

        Umount2("/sys", MNT_DETACH);
        if (Mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, null) != 0)
        {
            if (!userns) Must(-1, "mount /sys");
            log($"cannot mount a private /sys ({Marshal.GetLastPInvokeErrorMessage()}); the guest has none");
            Umount2("/sys", MNT_DETACH);
        }

        // gid=5 is the tty group; in a user namespace only root is mapped, so leave it out there.
        var ptsOptions = userns ? "newinstance,ptmxmode=0666,mode=0620" : "newinstance,ptmxmode=0666,mode=0620,gid=5";
        Must(Mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, ptsOptions), "mount /dev/pts");
        Must(Mount("/dev/pts/ptmx", "/dev/ptmx", null, MS_BIND, null), "bind /dev/pts/ptmx on /dev/ptmx");

        Must(Mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"), "mount /dev/shm");
        Must(Mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"), "mount /run");
        Must(Mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"), "mount /tmp");

        foreach (var path in hiddenPaths)
        {
            if (!IsHideable(path)) throw new ArgumentException($"cannot hide '{path}': give an absolute directory other than /");
            if (!Directory.Exists(path)) continue;
            Must(Mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=4k"), $"hide {path}");
        }
    }

    internal static bool IsHideable(string path) =>
        Path.IsPathFullyQualified(path) && Path.GetFullPath(path) != "/" && !path.Contains('\0');

    private static void Must(int rc, string what)
    {
        if (rc != 0) throw new IOException($"{what}: {Marshal.GetLastPInvokeErrorMessage()}");
    }
}
