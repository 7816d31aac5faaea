using System.Net.Sockets;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Ports;
using XenIo.VSwitch.Tests.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Ports;

/// <summary>
/// Ports that queue frames for a task of their own allocate nothing per frame once warm, even when the
/// task waits on an empty queue before every frame (the pace of a lightly loaded port). Counted over
/// every thread, so these run in the process-wide collection.
/// </summary>
[Collection(ProcessWide.Name)]
public sealed class PortAllocationTests : IDisposable
{
    private const int FramesPerWindow = 5000; // 4 windows: 20,000 frames measured
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-alloc").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_stream_port_sends_frame_after_frame_without_allocating()
    {
        var path = Path.Combine(_dir, "s.sock");
        var bridge = new Bridge("br0");
        var local = new QueuePort("local");
        using var stream = new StreamPort("qemu0", new StreamPortOptions(new UnixDomainSocketEndPoint(path), StreamRole.Listen));
        bridge.AddPort(local);
        bridge.AddPort(stream);
        using var peer = StreamPortTests.ConnectUnix(path);
        QueuePort.WaitUntil(() => stream.Connected);
        var frame = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        var received = new byte[4 + frame.Length];

        // One frame at a time, with a pause after each so the port's writer, having sent it, is back
        // waiting on its empty queue before the next (as at an ordinary rate), not still on its way.
        var bytes = ProcessWide.BytesAllocatedOver(FramesPerWindow, () =>
        {
            local.Inject(frame);
            for (var got = 0; got < received.Length;)
            {
                var n = peer.Receive(received.AsSpan(got));
                if (n == 0) throw new EndOfStreamException();
                got += n;
            }
            ProcessWide.Pause(TimeSpan.FromMicroseconds(50));
        });
        Assert.True(bytes < 8 * FramesPerWindow, $"{(double)bytes / FramesPerWindow:0.0} bytes allocated a frame");
        Assert.Equal(frame, received[4..]);
    }

    [Fact]
    public void A_patch_port_carries_frame_after_frame_without_allocating()
    {
        var br1 = new Bridge("br1");
        var br2 = new Bridge("br2");
        var h1 = new QueuePort("h1");
        var h2 = new RecordingPort("h2", record: false);
        var (a, b) = PatchPort.CreatePair("pa", "pb");
        br1.AddPort(h1);
        br1.AddPort(a);
        br2.AddPort(b);
        br2.AddPort(h2);
        var frame = Frame.Build(Frame.Broadcast, Frame.Mac(1));
        long sent = 0;

        // One frame at a time: the far end's pump has emptied its queue and waits again before the next.
        var bytes = ProcessWide.BytesAllocatedOver(FramesPerWindow, () =>
        {
            h1.Inject(frame);
            sent++;
            ProcessWide.SpinUntil(() => Volatile.Read(ref h2.SentCount) == sent);
        });
        Assert.True(bytes < 8 * FramesPerWindow, $"{(double)bytes / FramesPerWindow:0.0} bytes allocated a frame");
        a.Dispose();
        b.Dispose();
    }
}
