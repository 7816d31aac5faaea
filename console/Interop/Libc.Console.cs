using System.Runtime.InteropServices;

namespace XenIo.Consoled.Interop;

/// <summary>The C library calls consoled needs to decide who an administrator is (NSS-aware, unlike parsing /etc/group).</summary>
internal static unsafe partial class Libc
{
    /// <summary>glibc x86_64/aarch64 <c>struct passwd</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Passwd
    {
        public byte* Name;
        public byte* Password;
        public uint Uid;
        public uint Gid;
        public byte* Gecos;
        public byte* Dir;
        public byte* Shell;
    }

    /// <summary>glibc <c>struct group</c>.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct Group
    {
        public byte* Name;
        public byte* Password;
        public uint Gid;
        public byte** Members;
    }

    [LibraryImport("libc", EntryPoint = "getpwuid_r")]
    internal static partial int GetPwUid(uint uid, Passwd* pwd, byte* buffer, nuint bufferLength, Passwd** result);

    [LibraryImport("libc", EntryPoint = "getgrnam_r", StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int GetGrNam(string name, Group* group, byte* buffer, nuint bufferLength, Group** result);

    [LibraryImport("libc", EntryPoint = "getgrouplist")]
    internal static partial int GetGroupList(byte* user, uint group, uint* groups, int* count);

    [LibraryImport("libc", EntryPoint = "geteuid")]
    internal static partial uint GetEuid();

    [LibraryImport("libc", EntryPoint = "chown", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    internal static partial int Chown(string path, uint owner, uint group);

    /// <summary>The gid of a group by name (NSS), or null when there is no such group.</summary>
    internal static uint? GroupId(string name)
    {
        var buffer = new byte[16 * 1024];
        fixed (byte* buf = buffer)
        {
            Group group;
            Group* result;
            if (GetGrNam(name, &group, buf, (nuint)buffer.Length, &result) != 0 || result is null) return null;
            return group.Gid;
        }
    }
}
