using System.Collections.Concurrent;
using System.Diagnostics;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Tests.Ports;

/// <summary>A thread-safe recording port for tests where frames arrive from I/O threads.</summary>
internal sealed class QueuePort(string name) : SwitchPort(name)
{
    private readonly byte[] _buffer = new byte[70000];
    public readonly BlockingCollection<byte[]> Sent = [];
    public override string Kind => "test";

    protected internal override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        Sent.Add(frame.ToArray());
        return DropReason.None;
    }

    public void Inject(byte[] frame)
    {
        frame.CopyTo(_buffer, 64);
        var metadata = FrameMetadata.Plain(frame.Length);
        Deliver(_buffer, 64, ref metadata);
    }

    public byte[] Next(int seconds = 10) =>
        Sent.TryTake(out var f, TimeSpan.FromSeconds(seconds)) ? f : throw new TimeoutException($"{Name}: no frame within {seconds} s");

    public static void WaitUntil(Func<bool> condition, int seconds = 10)
    {
        var sw = Stopwatch.StartNew();
        while (!condition())
        {
            if (sw.Elapsed > TimeSpan.FromSeconds(seconds)) throw new TimeoutException("condition not met");
            Thread.Sleep(20);
        }
    }
}
