using System.Runtime.InteropServices;

namespace XenIo.VSwitch.Interop;

/// <summary>clock_gettime: DateTime has 100 ns resolution, captures are stamped in nanoseconds.</summary>
internal static unsafe partial class Libc
{
    public const int CLOCK_REALTIME = 0;

    [StructLayout(LayoutKind.Sequential)]
    public struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    public static partial int ClockGetTime(int clock, Timespec* ts);
}

internal static partial class Libc
{
    [LibraryImport("libc", EntryPoint = "geteuid")]
    public static partial uint GetEuid();
}
