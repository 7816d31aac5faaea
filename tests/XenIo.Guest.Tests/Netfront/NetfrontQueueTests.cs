using System.Collections.Concurrent;
using XenIo.Guest.Netfront;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Rings;
using XenIo.Net.Tap;
using XenIo.Tests;
using Xunit;

namespace XenIo.Guest.Tests.Netfront;

/// <summary>
/// netfront's data path against a hostile backend played by the test: a guest domain from hyperd's
/// core, its queue on a TAP inside a test namespace, and the backend's end of the rings mapped through
/// the real grant checks. Bad responses are dropped with one log line each, good ones still get through,
/// and impossible ring indices stop the connection instead of the agent.
/// </summary>
[Collection("guests")]
public sealed class NetfrontQueueTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "xenio-nfq-" + Guid.NewGuid().ToString("N")[..10]);
    private readonly ConcurrentQueue<string> _log = new();
    private CoreHost? _host;
    private GuestDomain? _guest;
    private HypercallClient? _dom0;
    private ForeignDomain? _foreign;
    private TapDevice? _tap;
    private Netns? _netns;
    private NetfrontQueue? _queue;

    private static async Task UntilAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline) throw new TimeoutException(what);
            await Task.Delay(10);
        }
    }

    private (NetfrontQueue Queue, NetfrontCounters Counters, BackRing<NetifTxRequest, NetifTxResponse> Tx, BackRing<NetifRxRequest, NetifRxResponse> Rx, EventChannel Event) Start()
    {
        Requires.Root();
        Requires.Tool("ip");
        _host = new CoreHost(_dir, budgetPages: 1 << 16);
        var domain = _host.CreateDomain(1, "nfq", frames: 2048, grantFrames: 4);
        var memory = domain.Memory.Duplicate();
        var memoryFd = (int)memory.DangerousGetHandle();
        memory.SetHandleAsInvalid();
        var end = domain.TakeGuestEnd();
        var endFd = (int)end.DangerousGetHandle();
        end.SetHandleAsInvalid();
        _guest = GuestDomain.Attach(memoryFd, endFd);

        var name = $"nfq{Environment.ProcessId % 100000}";
        _tap = TapDevice.Create(name, offloads: false);
        _netns = new Netns($"{name}ns");
        _netns.Adopt(name, "198.18.70.1/24");
        var counters = new NetfrontCounters();
        _queue = NetfrontQueue.Create(_guest, 0, _tap, splitEvents: false, counters, _log.Enqueue);

        _dom0 = HypercallClient.Connect(_host.HypercallSocketPath);
        _foreign = _dom0.MapForeign(1);
        Assert.Equal(GrantStatus.Okay, _foreign.Map(_queue.TxRingRef, false, out var txMap));
        Assert.Equal(GrantStatus.Okay, _foreign.Map(_queue.RxRingRef, false, out var rxMap));
        var channel = _dom0.BindInterdomain(1, _queue.TxPort);
        _queue.Start(TxFeatures.All);
        return (_queue, counters,
            BackRing<NetifTxRequest, NetifTxResponse>.Attach(Address(txMap), 4096),
            BackRing<NetifRxRequest, NetifRxResponse>.Attach(Address(rxMap), 4096), channel);
    }

    private static unsafe nint Address(in GrantMapping map) => (nint)map.Address;

    /// <summary>Writes a ring header word behind the ring's back, as a hostile backend would.</summary>
    private static unsafe void Poke(in GrantMapping map, int offset, uint value) => *(uint*)(map.Address + offset) = value;

    private short Fill(uint gref, int length)
    {
        var frame = new byte[length];
        frame.AsSpan(0, 6).Fill(0xFF); // broadcast: the TAP takes it whatever its MAC
        frame[6] = 0x02;
        frame[12] = 0x88; frame[13] = 0xB5; // local experimental EtherType
        Span<GrantCopyOp> op = [GrantCopyOp.ToGrant(0, 1, gref, 0, (ushort)length)];
        _foreign!.Copy(op, frame);
        Assert.Equal(GrantStatus.Okay, op[0].Status);
        return (short)length;
    }

    [SkippableFact]
    public async Task Hostile_rx_responses_are_dropped_with_one_line_each_and_good_packets_still_arrive()
    {
        var (_, counters, _, rx, channel) = Start();
        Assert.Equal(NetfrontQueue.RingSize, rx.UnconsumedRequests);
        var requests = new NetifRxRequest[8];
        for (var i = 0; i < requests.Length; i++) rx.TryConsumeRequest(out requests[i]);
        rx.TryWriteResponse(new NetifRxResponse { Id = requests[0].Id, Status = Fill(requests[0].Gref, 60) });
        rx.TryWriteResponse(new NetifRxResponse { Id = (ushort)(requests[1].Id + 7), Status = Fill(requests[1].Gref, 60) });
        rx.TryWriteResponse(new NetifRxResponse { Id = requests[2].Id, Status = NetifStatus.Error });
        rx.TryWriteResponse(new NetifRxResponse { Id = requests[3].Id, Offset = 4000, Status = 200 });
        rx.TryWriteResponse(new NetifRxResponse { Id = requests[4].Id, Offset = 4000, Status = 200 });
        // A chain whose second slot lies about its id: the whole packet goes.
        rx.TryWriteResponse(new NetifRxResponse { Id = requests[5].Id, Flags = NetRxFlags.MoreData, Status = Fill(requests[5].Gref, 4096) });
        rx.TryWriteResponse(new NetifRxResponse { Id = 999, Status = 100 });
        rx.TryWriteResponse(new NetifRxResponse { Id = requests[7].Id, Status = Fill(requests[7].Gref, 1000) });
        rx.PushResponses();
        channel.Notify();

        await UntilAsync(() => counters.RxPackets == 2 && counters.RxDropped == 5, $"2 packets and 5 drops (have {counters.RxPackets}, {counters.RxDropped})");
        Assert.Equal(1, _log.Count(l => l.Contains("UnexpectedId", StringComparison.Ordinal)));
        Assert.Equal(1, _log.Count(l => l.Contains("ErrorStatus", StringComparison.Ordinal)));
        Assert.Equal(1, _log.Count(l => l.Contains("BeyondPage", StringComparison.Ordinal)));
        // Every finished slot is posted again: the ring is full of requests once more.
        await UntilAsync(() => rx.UnconsumedRequests == NetfrontQueue.RingSize, "the rx ring refilled");
        Assert.False(_queue!.Failed.IsCompleted);
    }

    [SkippableFact]
    public async Task A_tx_response_for_an_id_never_posted_is_ignored_and_an_impossible_rsp_prod_stops_the_connection()
    {
        var (queue, counters, tx, _, channel) = Start();
        // Anything the guest sends (ARP for a neighbour) becomes tx requests.
        _ = Task.Run(() => _netns!.TryExec("ping", "-c", "2", "-W", "1", "198.18.70.2"));
        await UntilAsync(() => tx.UnconsumedRequests > 0, "a tx request from the guest");
        tx.TryConsumeRequest(out var request);
        Assert.InRange(request.Size, 14, 1514);
        tx.TryWriteResponse(new NetifTxResponse { Id = (ushort)(request.Id ^ 0x80), Status = NetifStatus.Okay });
        tx.PushResponses();
        channel.Notify();
        await UntilAsync(() => _log.Any(l => l.Contains("we did not post", StringComparison.Ordinal)), "the ignored response's log line");
        Assert.False(queue.Failed.IsCompleted);

        // rsp_prod far beyond anything pushed: the ring is broken, the connection ends, nothing throws.
        Assert.Equal(GrantStatus.Okay, _foreign!.Map(queue.TxRingRef, false, out var map));
        Poke(map, SharedRingHeader.RspProdOffset, 5000);
        channel.Notify();
        var reason = await queue.Failed.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Contains("broke the tx ring", reason, StringComparison.Ordinal);
        _foreign.Unmap(map);
        Assert.True(counters.TxPackets >= 1);
    }

    public void Dispose()
    {
        _queue?.ReleaseAsync(TimeSpan.FromSeconds(1)).GetAwaiter().GetResult();
        _tap?.Dispose();
        _netns?.Dispose();
        _foreign?.Dispose();
        _dom0?.Dispose();
        _guest?.Dispose();
        _host?.Dispose();
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }
}
