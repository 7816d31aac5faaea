using System.Globalization;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;
using XenIo.TestPeer.Rings;
using XenIo.Tests;
using Xunit;
using Xunit.Abstractions;

namespace XenIo.Hypervisor.Tests.Rings;

/// <summary>A front ring in this process and a back ring in another OS process, sharing a mapped file.</summary>
public class CrossProcessRingTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1, 1_000_000)]  // one page: 256 slots
    [InlineData(4, 200_000)]    // order 2: 1024 slots
    public async Task Two_processes_exchange_netif_tx_requests_across_the_u32_wrap(int pages, int count)
    {
        // Just below 2^32: the indices wrap early in the run and every later slot is past the wrap.
        const uint start = uint.MaxValue - 1000;
        int length = pages * RingGeometry.PageSize;
        var dir = SharedRingFile.TempDirectory("xenio-ring");
        try
        {
            var frontSocket = Path.Combine(dir, "front.sock");
            var backSocket = Path.Combine(dir, "back.sock");
            using var file = SharedRingFile.Create(Path.Combine(dir, "ring"), length);
            var ring = FrontRing<NetifTxRequest, NetifTxResponse>.Init(file.Address, length, start);
            using var notifier = DatagramRingNotifier.Bind(frontSocket);

            using var peer = Peer.Start("ring-netif-tx-back", file.Path, length.ToString(CultureInfo.InvariantCulture),
                start.ToString(CultureInfo.InvariantCulture), count.ToString(CultureInfo.InvariantCulture), backSocket, frontSocket);
            var stderr = peer.StandardError.ReadToEndAsync();
            var ready = peer.StandardOutput.ReadLine();
            if (ready != "ready") Assert.Fail($"peer did not start: {ready} {await stderr}");
            notifier.Connect(backSocket);

            var front = NetifTxExchange.RunFront(ref ring, notifier, (ulong)count);
            var backLine = peer.StandardOutput.ReadLine();
            Assert.True(peer.WaitForExit(30_000), "peer did not exit");
            output.WriteLine($"front: {front}; received={notifier.Received}");
            output.WriteLine($"back:  {backLine}; {await stderr}");

            Assert.Null(front.Failure);
            Assert.Equal(RingError.None, front.Error);
            Assert.Equal((ulong)count, front.Done);
            Assert.Equal(0UL, front.Mismatches);
            Assert.Equal(0, peer.ExitCode);
            var back = Parse(backLine);
            Assert.Equal((long)count, back["done"]);
            Assert.Equal(0, back["mismatches"]);
            // Both ends wrapped: the private indices ran from just below 2^32 to past it.
            Assert.Equal(unchecked(start + (uint)count), ring.RequestProducerPrivate);
            Assert.Equal(unchecked(start + (uint)count), ring.ResponseConsumer);
            // Notifications: each end woke the other at least once and never more than once per item;
            // every datagram received was one the other side counted as sent.
            Assert.InRange(front.Notifies, 1, count);
            Assert.InRange(back["notifies"], 1, count);
            Assert.InRange(notifier.Received, 0, back["notifies"]);
            Assert.InRange(back["received"], 0, front.Notifies);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static Dictionary<string, long> Parse(string? line)
    {
        Assert.NotNull(line);
        var fields = new Dictionary<string, long>();
        foreach (var kv in line!.Split(' '))
        {
            var parts = kv.Split('=');
            if (parts.Length == 2 && long.TryParse(parts[1], CultureInfo.InvariantCulture, out long v)) fields[parts[0]] = v;
        }
        return fields;
    }
}
