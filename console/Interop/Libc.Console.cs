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
}
