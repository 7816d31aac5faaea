using System.Buffers.Binary;
using System.Net.Sockets;
using System.Text;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;
using Xunit;

namespace XenIo.Hypervisor.Tests.Store;

/// <summary>Malformed and hostile traffic: the daemon answers or disconnects, never crashes, never affects others.</summary>
public class HostileInputTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private static readonly byte[] s_alphabet = Encoding.ASCII.GetBytes("/ab@-_019TFrwnb\0\0\0local/domain/xenio");

    /// <summary>Random requests whose header length is honest (each must get exactly one reply).</summary>
    private static byte[] RandomMessages(Random rng, int count, out int messages)
    {
        using var ms = new MemoryStream();
        messages = 0;
        for (var i = 0; i < count; i++)
        {
            var type = rng.Next(10) == 0 ? (XsdSockmsgType)rng.Next(23, 1000) : (XsdSockmsgType)rng.Next(0, 23);
            var len = rng.Next(20) == 0 ? rng.Next(0, XenstoreLimits.PayloadMax + 1) : rng.Next(0, 64);
            var payload = new byte[len];
            for (var k = 0; k < len; k++)
                payload[k] = rng.Next(8) == 0 ? (byte)rng.Next(256) : s_alphabet[rng.Next(s_alphabet.Length)];
            if (len > 0 && rng.Next(3) == 0) payload[0] = (byte)'/';
            var tx = rng.Next(4) == 0 ? (uint)rng.Next(0, 4) : 0u;
            ms.Write(StoreHarness.Message(type, (uint)rng.Next(1, int.MaxValue), tx, payload));
            messages++;
        }
        return ms.ToArray();
    }

    /// <summary>Reads until <paramref name="lastReqId"/>'s reply arrives; counts replies (not watch events).</summary>
    private static async Task<int> DrainAsync(IXenstoreStream stream, uint lastReqId)
    {
        var buf = new byte[1 << 16];
        int start = 0, end = 0, replies = 0;
        while (true)
        {
            while (end - start >= 16)
            {
                var h = XsdCodec.ReadHeader(buf.AsSpan(start));
                Assert.True(h.Len <= XenstoreLimits.PayloadMax);
                if (end - start < 16 + (int)h.Len) break;
                if (h.Type != XsdSockmsgType.WatchEvent)
                {
                    replies++;
                    if (h.ReqId == lastReqId && h.Type == XsdSockmsgType.Read) return replies;
                }
                start += 16 + (int)h.Len;
            }
            buf.AsSpan(start, end - start).CopyTo(buf);
            end -= start;
            start = 0;
            var n = await stream.ReadAsync(buf.AsMemory(end), CancellationToken.None);
            if (n == 0) throw new IOException("daemon closed the connection");
            end += n;
        }
    }

    private static async Task FuzzOneStreamAsync(IXenstoreStream stream, Random rng, string readablePath, int earlierReplies = 0)
    {
        var blob = RandomMessages(rng, 10_000, out var count);
        const uint last = 0xFEEDu;
        var probe = StoreHarness.Message(XsdSockmsgType.Read, last, 0, Encoding.ASCII.GetBytes(readablePath + "\0"));
        var drain = DrainAsync(stream, last);
        for (var off = 0; off < blob.Length; off += 8192)
            await stream.WriteAsync(blob.AsMemory(off, Math.Min(8192, blob.Length - off)), CancellationToken.None);
        await stream.WriteAsync(probe, CancellationToken.None);
        Assert.Equal(earlierReplies + count + 1, await drain.WaitAsync(Wait));
    }

    [Fact]
    public async Task TenThousandMalformedMessagesOverTheSocket()
    {
        await using var h = new StoreHarness();
        var good = await h.Dom0Async();
        await good.WriteAsync("/probe", "alive");
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(h.SocketPath));
        await using var stream = new SocketXenstoreStream(socket);
        await FuzzOneStreamAsync(stream, new Random(349), "/probe");

        // A payload length beyond XENSTORE_PAYLOAD_MAX kills that connection only.
        var bad = new byte[16];
        XsdCodec.WriteHeader(bad, XsdSockmsgType.Read, 1, 0, XenstoreLimits.PayloadMax + 1);
        await stream.WriteAsync(bad, CancellationToken.None);
        Assert.Equal(0, await stream.ReadAsync(new byte[64], CancellationToken.None).AsTask().WaitAsync(Wait));

        Assert.Equal("alive", await good.ReadAsync("/probe"));
        await using var fresh = await XenstoreClient.ConnectAsync(h.SocketPath);
        Assert.Equal("alive", await fresh.ReadAsync("/probe"));
    }

    [Fact]
    public async Task TenThousandMalformedMessagesOverARing()
    {
        await using var h = new StoreHarness();
        var dom0 = await h.Dom0Async();
        var (page, doorbell) = await h.IntroduceRingAsync(dom0, 12);
        var ring = new XenstoreRingStream(page, doorbell, isDaemon: false);
        await ring.WriteAsync(StoreHarness.Message(XsdSockmsgType.Write, 1, 0, Encoding.ASCII.GetBytes("probe\0alive")), CancellationToken.None);
        await FuzzOneStreamAsync(ring, new Random(155), "probe", earlierReplies: 1);

        // A second guest, and dom0, were never affected.
        var other = await h.GuestAsync(dom0, 13);
        await other.WriteAsync("x", "1");
        Assert.Equal("1", await other.ReadAsync("x"));
        Assert.Equal("alive", await dom0.ReadAsync("/local/domain/12/probe"));

        // An oversized length disconnects the guest; everyone else carries on.
        var bad = new byte[16];
        XsdCodec.WriteHeader(bad, XsdSockmsgType.Read, 1, 0, 5000);
        await ring.WriteAsync(bad, CancellationToken.None);
        while (h.Daemon.ConnectionOf(12) is { IsClosed: false }) await Task.Delay(5);
        Assert.Equal("1", await other.ReadAsync("x"));
        Assert.Equal("alive", await dom0.ReadAsync("/local/domain/12/probe"));
        doorbell.Dispose();
    }

    [Fact]
    public async Task RingIndexOverflowDisconnectsTheGuestOnly()
    {
        await using var h = new StoreHarness();
        var dom0 = await h.Dom0Async();
        var (page, doorbell) = await h.IntroduceRingAsync(dom0, 20);
        // The guest claims 5000 bytes in a 1 KiB ring.
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(XenstoreDomainInterface.ReqProdOffset), 5000);
        doorbell.Notify();
        while (h.Daemon.ConnectionOf(20) is { IsClosed: false }) await Task.Delay(5);
        Assert.Equal(XenstoreLimits.ErrorRingIdx, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(XenstoreDomainInterface.ErrorOffset)));
        await dom0.WriteAsync("/still", "here");
        Assert.Equal("here", await dom0.ReadAsync("/still"));
        doorbell.Dispose();
    }

    [Fact]
    public async Task WatchEventBoundHoldsForAGuestThatDoesNotRead()
    {
        var quota = new XenstoreQuota();
        await using var h = new StoreHarness(quota);
        var dom0 = await h.Dom0Async();
        var (page, doorbell) = await h.IntroduceRingAsync(dom0, 30);
        var ring = new XenstoreRingStream(page, doorbell, isDaemon: false);
        // Set a watch on its own directory, then never read the response ring again.
        await ring.WriteAsync(StoreHarness.Message(XsdSockmsgType.Watch, 1, 0, Encoding.ASCII.GetBytes("data\0tok\0")), CancellationToken.None);
        const int writes = 5000;
        for (var i = 0; i < writes; i++) await dom0.WriteAsync("/local/domain/30/data/k", i.ToString());
        var conn = h.Daemon.ConnectionOf(30)!;
        Assert.True(conn.Output.PendingEvents <= quota.PendingEventsPerWatch, $"{conn.Output.PendingEvents} events pending");
        Assert.True(conn.Output.PendingBytes <= quota.PendingEventsPerWatch * XsdCodec.MaxMessage + 2 * XsdCodec.MaxMessage);
        Assert.True(conn.DroppedEvents >= writes - quota.PendingEventsPerWatch - XenstoreLimits.RingSize / 16,
            $"only {conn.DroppedEvents} dropped");
        // dom0 is unaffected.
        Assert.Equal((writes - 1).ToString(), await dom0.ReadAsync("/local/domain/30/data/k"));
        doorbell.Dispose();
    }

    [Fact]
    public async Task AGuestThatDoesNotTakeRepliesStopsBeingRead()
    {
        var quota = new XenstoreQuota();
        await using var h = new StoreHarness(quota);
        var dom0 = await h.Dom0Async();
        var (page, doorbell) = await h.IntroduceRingAsync(dom0, 40);
        var ring = new XenstoreRingStream(page, doorbell, isDaemon: false);
        var read = StoreHarness.Message(XsdSockmsgType.GetDomainPath, 1, 0, "40\0"u8);
        // 500 requests need 500 replies; the guest takes none of them.
        var writer = Task.Run(async () =>
        {
            for (var i = 0; i < 500; i++) await ring.WriteAsync(read, CancellationToken.None);
        });
        var conn = h.Daemon.ConnectionOf(40)!;
        // Wait for both rings to fill: the guest cannot push more requests, the daemon cannot push more replies.
        uint Used(int prod, int cons) => BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(prod)) - BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(cons));
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while ((Used(XenstoreDomainInterface.ReqProdOffset, XenstoreDomainInterface.ReqConsOffset) < XenstoreLimits.RingSize
                || Used(XenstoreDomainInterface.RspProdOffset, XenstoreDomainInterface.RspConsOffset) < XenstoreLimits.RingSize)
               && DateTime.UtcNow < deadline)
            await Task.Delay(5);
        Assert.Equal((uint)XenstoreLimits.RingSize, Used(XenstoreDomainInterface.RspProdOffset, XenstoreDomainInterface.RspConsOffset));
        Assert.True(conn.Output.PendingReplies + conn.Output.InFlightReplies <= quota.Outstanding,
            $"{conn.Output.PendingReplies} + {conn.Output.InFlightReplies} replies held");
        Assert.False(writer.IsCompleted);     // the daemon stopped reading its requests
        await dom0.WriteAsync("/ok", "1");    // and serves everyone else
        Assert.Equal("1", await dom0.ReadAsync("/ok"));
        doorbell.Dispose();
        await Assert.ThrowsAnyAsync<IOException>(() => writer);
    }

    [Fact]
    public void OutputBacksUpAfterOutstandingReplies()
    {
        var output = new XenstoreOutput(maxReplies: 20, maxEvents: 8, maxEventsPerWatch: 4);
        var msg = StoreHarness.Message(XsdSockmsgType.Read, 1, 0, "x"u8);
        for (var i = 0; i < 19; i++) output.AppendReply(msg);
        Assert.False(output.IsBackedUp);
        output.AppendReply(msg);
        Assert.True(output.IsBackedUp);
        var w1 = new XenstoreWatch("/a", "t", 0);
        var w2 = new XenstoreWatch("/b", "t", 0);
        var accepted1 = Enumerable.Range(0, 10).Count(_ => output.TryAppendEvent(w1, msg));
        var accepted2 = Enumerable.Range(0, 10).Count(_ => output.TryAppendEvent(w2, msg));
        var w3 = new XenstoreWatch("/c", "t", 0);
        Assert.Equal(4, accepted1);   // per watch
        Assert.Equal(4, accepted2);
        Assert.False(output.TryAppendEvent(w3, msg));  // per connection
        Assert.Equal(13, output.DroppedEvents);
    }
}
