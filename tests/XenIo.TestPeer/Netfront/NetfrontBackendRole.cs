using System.Globalization;
using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Rings;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.TestPeer.Netfront;

/// <summary>
/// A minimal netback for netfront's tests, in its own dom0 process as the real one will be: for two
/// guests' vif 0 it publishes netback's features (split event channels for the first guest, one
/// channel for the second, so both of netfront's modes run), goes InitWait, waits for the frontend's
/// keys and Connected, maps the rings, binds the event channels, goes Connected, and forwards every
/// frame one guest transmits into the other's posted RX buffers with grant copy, keeping the GSO
/// extra info and checksum flags. A packet that finds no room on the other side is dropped, as
/// netback does when a guest's RX queue is full.
/// </summary>
internal static class NetfrontBackendRole
{
    /// <summary>args: xenstored socket, hypercall socket, first guest's domid, second guest's domid.</summary>
    [PeerRole("netfront-backend")]
    public static int Run(string[] args)
    {
        var store = XenstoreClient.ConnectAsync(args[0]).GetAwaiter().GetResult();
        using var hypercalls = HypercallClient.Connect(args[1]);
        var a = Vif.Connect(store, hypercalls, ushort.Parse(args[2], CultureInfo.InvariantCulture), split: true);
        var b = Vif.Connect(store, hypercalls, ushort.Parse(args[3], CultureInfo.InvariantCulture), split: false);
        Console.WriteLine("connected");
        var stop = false;
        var ab = new Thread(() => Forward(a, b, ref stop)) { IsBackground = true };
        var ba = new Thread(() => Forward(b, a, ref stop)) { IsBackground = true };
        ab.Start();
        ba.Start();
        // The test ends us by closing stdin (or by SIGKILL, to play a netback that crashed).
        Console.In.ReadToEnd();
        stop = true;
        ab.Join();
        ba.Join();
        Console.WriteLine($"forwarded {a.Forwarded} {b.Forwarded} dropped {a.Dropped} {b.Dropped}");
        return 0;
    }

    private static void Forward(Vif from, Vif to, ref bool stop)
    {
        var buffer = new byte[65536];
        var ops = new GrantCopyOp[TxSlotsMax];
        var slots = new NetifTxRequest[TxSlotsMax];
        while (!Volatile.Read(ref stop))
        {
            var moved = false;
            while (from.Tx.UnconsumedRequests > 0)
            {
                moved = true;
                ForwardOne(from, to, buffer, ops, slots);
            }
            if (moved)
            {
                if (from.Tx.PushResponses()) from.TxEvent.Notify();
                continue;
            }
            if (from.Tx.FinalCheckForRequests()) continue;
            from.TxEvent.Wait(20);
        }
    }

    private const int TxSlotsMax = 20;

    private static void ForwardOne(Vif from, Vif to, byte[] buffer, GrantCopyOp[] ops, NetifTxRequest[] slots)
    {
        // Every slot of a packet is pushed together by netfront: take them all (first, extras, data).
        var n = 0;
        from.Tx.TryConsumeRequest(out slots[n++]);
        NetifExtraInfo gso = default;
        var last = slots[0];
        if ((slots[0].Flags & NetTxFlags.ExtraInfo) != 0 && from.Tx.TryConsumeRequest(out slots[n]))
        {
            gso = Unsafe.As<NetifTxRequest, NetifExtraInfo>(ref slots[n]);
            n++;
        }
        while ((last.Flags & NetTxFlags.MoreData) != 0 && n < TxSlotsMax && from.Tx.TryConsumeRequest(out slots[n]))
            last = slots[n++];

        var total = slots[0].Size;
        var rest = 0;
        for (var i = 1; i < n; i++)
            if (!(i == 1 && gso.Type == NetifExtraType.Gso)) rest += slots[i].Size;
        var ok = total > rest && total - rest <= 4096;
        var count = 0;
        var offset = 0;
        for (var i = 0; i < n && ok; i++)
        {
            if (i == 1 && gso.Type == NetifExtraType.Gso) continue;
            var size = i == 0 ? total - rest : slots[i].Size;
            ops[count++] = GrantCopyOp.FromGrant(from.Domid, slots[i].Gref, slots[i].Offset, (uint)offset, (ushort)size);
            offset += size;
        }
        if (ok)
        {
            from.Foreign.Copy(ops.AsSpan(0, count), buffer);
            for (var i = 0; i < count; i++) ok &= ops[i].Status == GrantStatus.Okay;
        }
        for (var i = 0; i < n; i++)
        {
            var extra = i == 1 && gso.Type == NetifExtraType.Gso;
            from.Tx.TryWriteResponse(new NetifTxResponse
            {
                Id = extra ? (ushort)0 : slots[i].Id,
                Status = extra ? NetifStatus.Null : ok ? NetifStatus.Okay : NetifStatus.Error,
            });
        }
        if (!ok || !Deliver(to, buffer.AsSpan(0, total), slots[0].Flags, gso)) from.Dropped++;
        else from.Forwarded++;
    }

    private static bool Deliver(Vif to, ReadOnlySpan<byte> frame, NetTxFlags txFlags, NetifExtraInfo gso)
    {
        var pages = (frame.Length + 4095) / 4096;
        var isGso = gso.Type == NetifExtraType.Gso;
        if (to.Rx.UnconsumedRequests < pages + (isGso ? 1 : 0)) return false;
        var flags = NetRxFlags.None;
        if ((txFlags & NetTxFlags.CsumBlank) != 0) flags |= NetRxFlags.CsumBlank | NetRxFlags.DataValidated;
        else if ((txFlags & NetTxFlags.DataValidated) != 0) flags |= NetRxFlags.DataValidated;
        Span<GrantCopyOp> op = stackalloc GrantCopyOp[1];
        var local = frame.ToArray();
        for (var page = 0; page < pages; page++)
        {
            to.Rx.TryConsumeRequest(out var request);
            var length = Math.Min(4096, frame.Length - page * 4096);
            op[0] = GrantCopyOp.ToGrant((uint)(page * 4096), to.Domid, request.Gref, 0, (ushort)length);
            to.Foreign.Copy(op, local);
            var f = page == 0 ? flags | (isGso ? NetRxFlags.ExtraInfo : 0) : NetRxFlags.None;
            if (page + 1 < pages) f |= NetRxFlags.MoreData;
            to.Rx.TryWriteResponse(new NetifRxResponse
            {
                Id = request.Id,
                Offset = 0,
                Flags = f,
                Status = op[0].Status == GrantStatus.Okay ? (short)length : NetifStatus.Error,
            });
            if (page == 0 && isGso)
            {
                to.Rx.TryConsumeRequest(out _);
                var extra = new NetifExtraInfo { Type = NetifExtraType.Gso, GsoSize = gso.GsoSize, GsoType = gso.GsoType };
                to.Rx.TryWriteResponse(Unsafe.As<NetifExtraInfo, NetifRxResponse>(ref extra));
            }
        }
        lock (to)
        {
            if (to.Rx.PushResponses()) to.RxEvent.Notify();
        }
        return true;
    }

    private sealed unsafe class Vif
    {
        public required ushort Domid;
        public required ForeignDomain Foreign;
        public BackRing<NetifTxRequest, NetifTxResponse> Tx;
        public BackRing<NetifRxRequest, NetifRxResponse> Rx;
        public required EventChannel TxEvent;
        public required EventChannel RxEvent;
        public long Forwarded;
        public long Dropped;

        public static Vif Connect(XenstoreClient store, HypercallClient hypercalls, ushort domid, bool split)
        {
            var be = $"/local/domain/0/backend/vif/{domid}/0";
            var fe = store.ReadAsync($"{be}/frontend").GetAwaiter().GetResult();
            foreach (var (key, value) in new[]
            {
                ("feature-sg", "1"), ("feature-gso-tcpv4", "1"), ("feature-gso-tcpv6", "1"), ("feature-rx-copy", "1"),
                ("feature-ipv6-csum-offload", "1"), ("feature-split-event-channels", split ? "1" : "0"),
            })
                store.WriteAsync($"{be}/{key}", value).GetAwaiter().GetResult();
            store.WriteAsync($"{be}/state", "2").GetAwaiter().GetResult();
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (store.TryReadAsync($"{fe}/state").GetAwaiter().GetResult() != "4")
            {
                if (DateTime.UtcNow > deadline) throw new TimeoutException($"domain {domid}'s netfront never connected");
                Thread.Sleep(10);
            }
            uint Key(string key) => uint.Parse(store.ReadAsync($"{fe}/{key}").GetAwaiter().GetResult(), CultureInfo.InvariantCulture);
            var foreign = hypercalls.MapForeign(domid);
            if (foreign.Map(Key("tx-ring-ref"), false, out var txMap) != GrantStatus.Okay || foreign.Map(Key("rx-ring-ref"), false, out var rxMap) != GrantStatus.Okay)
                throw new InvalidOperationException($"cannot map domain {domid}'s rings");
            EventChannel txEvent, rxEvent;
            if (split)
            {
                txEvent = hypercalls.BindInterdomain(domid, Key("event-channel-tx"));
                rxEvent = hypercalls.BindInterdomain(domid, Key("event-channel-rx"));
            }
            else
            {
                txEvent = rxEvent = hypercalls.BindInterdomain(domid, Key("event-channel"));
            }
            var vif = new Vif
            {
                Domid = domid,
                Foreign = foreign,
                Tx = BackRing<NetifTxRequest, NetifTxResponse>.Attach((nint)txMap.Address, 4096),
                Rx = BackRing<NetifRxRequest, NetifRxResponse>.Attach((nint)rxMap.Address, 4096),
                TxEvent = txEvent,
                RxEvent = rxEvent,
            };
            store.WriteAsync($"{be}/state", "4").GetAwaiter().GetResult();
            return vif;
        }
    }
}
