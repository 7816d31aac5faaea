namespace XenIo.VSwitch.Capture;

/// <summary>Wall-clock time in nanoseconds since the Unix epoch, as capture records carry it. Injectable for tests.</summary>
public abstract class CaptureClock
{
    public static readonly CaptureClock Realtime = new RealtimeClock();

    public abstract long UnixNanoseconds();

    private sealed unsafe class RealtimeClock : CaptureClock
    {
        public override long UnixNanoseconds()
        {
            Interop.Libc.Timespec ts;
            Interop.Libc.ClockGetTime(Interop.Libc.CLOCK_REALTIME, &ts);
            return ts.Seconds * 1_000_000_000 + ts.Nanoseconds;
        }
    }
}
