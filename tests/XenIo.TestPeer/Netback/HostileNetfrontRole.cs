using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;

namespace XenIo.TestPeer.Netback;

/// <summary>
/// A hostile netfront holding only a domU's descriptors. Per session it publishes its keys (on stdout,
/// for the test to write into xenstore as the guest would), then on <c>GO kind budget</c> writes about
/// <c>budget</c> random and malformed TX slots (bogus grefs, lying sizes, zero-length and tiny fragments,
/// too many slots, spoofed sources, bad offload, bad multicast extras) while posting bad RX requests,
/// and ends with one protocol violation of the given kind that must get it disconnected. It reports
/// <c>SENT n closed|open</c> once its event channel's backend end has closed (or after a timeout), and
/// starts over on <c>RESET</c>.
/// </summary>
public static class HostileNetfrontRole
{
    /// <summary>Fatal endings, in the order sessions cycle through them.</summary>
    public static readonly string[] FatalKinds = ["tx-req-prod-overflow", "twenty-one-slots", "bad-extra-type", "cross-page", "gso-size-zero", "rx-req-prod-overflow", "missing-slots"];

    /// <summary>args: handoff-socket first-free-frame seed mac(hex) split(0|1).</summary>
    [PeerRole("netback-hostile-frontend")]
    public static int Run(string[] args)
    {
        using var guest = GuestDomain.Attach(DomainHandoff.Receive(args[0]));
        var rng = new Random(int.Parse(args[2]));
        var mac = Convert.ToUInt64(args[3], 16);
        using var front = new TestNetfront(guest, args[4] == "1", uint.Parse(args[1]));
        while (true)
        {
            Console.WriteLine("KEYS " + string.Join(';', front.FrontendKeys(multicastControl: true).Select(kv => $"{kv.Key}={kv.Value}")));
            Console.Out.Flush();
            var line = Console.ReadLine();
            if (line is null || line == "QUIT") return 0;
            var parts = line.Split(' ');
            if (parts[0] != "GO") return 2;
            var sent = Session(front, int.Parse(parts[1]), long.Parse(parts[2]), mac, rng, out var closed);
            Console.WriteLine($"SENT {sent} {(closed ? "closed" : "open")}");
            Console.Out.Flush();
            line = Console.ReadLine();
            if (line != "RESET") return line == "QUIT" ? 0 : 2;
            front.Reset();
        }
    }

    private static long Session(TestNetfront front, int fatal, long budget, ulong mac, Random rng, out bool closed)
    {
        long sent = 0;
        var packets = 0;
        // An event storm: notifications with no work behind them (XSA-332).
        var storm = System.Diagnostics.Stopwatch.StartNew();
        while (storm.ElapsedMilliseconds < 50)
        {
            front.TxEvent.Notify();
            front.RxEvent.Notify();
        }
        PostBadRx(front, rng);
        while (sent < budget && !front.TxEvent.PeerClosed)
        {
            front.ReapTx();
            front.DrainRx();
            if (front.TxFreeRequests < 48)
            {
                front.PushTx();
                front.WaitTx(5);
                continue;
            }
            sent += WriteJunkPacket(front, mac, rng);
            if (++packets % 16 == 0) front.PushTx();
            if (packets % 64 == 0) PostBadRx(front, rng);
        }
        front.PushTx();
        // Room for the ending (at most 21 slots).
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (front.TxFreeRequests < 24 && !front.TxEvent.PeerClosed && DateTime.UtcNow < deadline)
        {
            front.WaitTx(5);
            front.ReapTx();
        }
        if (!front.TxEvent.PeerClosed) sent += WriteFatal(front, fatal, rng);
        while (!front.TxEvent.PeerClosed && DateTime.UtcNow < deadline)
        {
            front.TxEvent.Wait(20);
            front.ReapTx();
            front.RxEvent.Notify();
        }
        closed = front.TxEvent.PeerClosed;
        return sent;
    }

    private static uint RandomGref(TestNetfront front, Random rng) => rng.Next(4) switch
    {
        0 => (uint)rng.Next(),
        1 => front.RxGrefs[rng.Next(TestNetfront.Slots)],
        2 => (uint)rng.Next(0, 16),
        _ => front.TxGrefs[rng.Next(TestNetfront.Slots)] + 100_000,
    };

    /// <summary>Writes one malformed-or-not packet; returns the slots it used. Never one of the fatal violations.</summary>
    private static int WriteJunkPacket(TestNetfront front, ulong mac, Random rng)
    {
        var page = rng.Next(TestNetfront.Slots);
        var gref = front.TxGrefs[page];
        var id = (ushort)rng.Next(0x10000);
        var size = (ushort)rng.Next(14, 1500);
        var data = front.TxPage(page);
        // Frames go to our own MAC: the bridge filters them, so the other vifs see none of this.
        WriteMac(data, mac);
        WriteMac(data[6..], mac);
        var kind = rng.Next(14);
        switch (kind)
        {
            case 0: // bogus grant ref
                return Write(front, new NetifTxRequest { Gref = RandomGref(front, rng), Offset = 0, Size = size, Id = id });
            case 1: // a first size too small for Ethernet
                return Write(front, new NetifTxRequest { Gref = gref, Size = (ushort)rng.Next(0, 14), Id = id });
            case 2: // fragments bigger than the packet
            {
                Write(front, new NetifTxRequest { Gref = gref, Size = 100, Flags = NetTxFlags.MoreData, Id = id });
                return 1 + Write(front, new NetifTxRequest { Gref = front.TxGrefs[(page + 1) % TestNetfront.Slots], Size = 200, Id = (ushort)(id + 1) });
            }
            case 3: // 18 or 19 tiny fragments, zero-length ones among them
            {
                var slots = rng.Next(2, 20);
                var sizes = new ushort[slots];
                var total = 0;
                for (var s = 1; s < slots; s++)
                {
                    sizes[s] = (ushort)rng.Next(0, 8);
                    total += sizes[s];
                }
                sizes[0] = (ushort)(total + rng.Next(14, 40));
                for (var s = 0; s < slots; s++)
                    Write(front, new NetifTxRequest
                    {
                        Gref = front.TxGrefs[(page + s) % TestNetfront.Slots], Offset = (ushort)rng.Next(0, 4000), Size = sizes[s],
                        Flags = s < slots - 1 ? NetTxFlags.MoreData : NetTxFlags.None, Id = (ushort)(id + s),
                    });
                return slots;
            }
            case 4: // spoofed source MAC
                data[6] ^= 0x02;
                return Write(front, new NetifTxRequest { Gref = gref, Size = size, Id = id });
            case 5: // csum_blank on something that is not TCP/UDP
                return Write(front, new NetifTxRequest { Gref = gref, Size = size, Flags = NetTxFlags.CsumBlank, Id = id });
            case 6: // a good GSO extra on garbage
            {
                Write(front, new NetifTxRequest { Gref = gref, Size = size, Flags = NetTxFlags.ExtraInfo, Id = id });
                return 1 + WriteExtra(front, new NetifExtraInfo { Type = NetifExtraType.Gso, GsoType = NetifGsoType.TcpV4, GsoSize = (ushort)rng.Next(1, 9000) });
            }
            case 7: // multicast add of a unicast address (an error), then a real group, then delete
            {
                Write(front, new NetifTxRequest { Gref = gref, Size = size, Flags = NetTxFlags.ExtraInfo, Id = id });
                var extra = new NetifExtraInfo { Type = rng.Next(3) == 0 ? NetifExtraType.McastDel : NetifExtraType.McastAdd, Flags = NetifExtraFlags.More };
                Span<byte> addr = extra.McastAddr;
                rng.NextBytes(addr);
                WriteExtra(front, extra);
                return 2 + WriteExtra(front, new NetifExtraInfo { Type = NetifExtraType.Hash });
            }
            case 8: // random offset and flags (no more_data or extra_info)
            {
                var offset = (ushort)rng.Next(0, 4096 - size);
                return Write(front, new NetifTxRequest { Gref = gref, Offset = offset, Size = size, Flags = (NetTxFlags)rng.Next(4), Id = id });
            }
            case 9: // a grant of another page kind: an RX page (writable) as TX data
                return Write(front, new NetifTxRequest { Gref = front.RxGrefs[page], Size = size, Id = id });
            case 10: // a 64 KiB frame in 16 slots, with a bogus gref in the middle
            {
                for (var s = 0; s < 16; s++)
                    Write(front, new NetifTxRequest
                    {
                        Gref = s == 7 ? RandomGref(front, rng) : front.TxGrefs[(page + s) % TestNetfront.Slots], Size = s == 0 ? (ushort)65535 : (ushort)4096,
                        Flags = s < 15 ? NetTxFlags.MoreData : NetTxFlags.None, Id = (ushort)(id + s),
                    });
                return 16;
            }
            default: // an honest small frame
                return Write(front, new NetifTxRequest { Gref = gref, Size = size, Id = id, Flags = rng.Next(2) == 0 ? NetTxFlags.DataValidated : NetTxFlags.None });
        }
    }

    private static int WriteFatal(TestNetfront front, int fatal, Random rng)
    {
        var gref = front.TxGrefs[0];
        switch (FatalKinds[fatal % FatalKinds.Length])
        {
            case "tx-req-prod-overflow":
                front.PokeRequestProducer(tx: true, front.TxResponseConsumer + 600 + (uint)rng.Next(1000));
                return 1;
            case "twenty-one-slots":
                for (var s = 0; s < 21; s++)
                    Write(front, new NetifTxRequest { Gref = gref, Size = s == 0 ? (ushort)1000 : (ushort)10, Flags = s < 20 ? NetTxFlags.MoreData : NetTxFlags.None, Id = (ushort)s });
                front.PushTx();
                return 21;
            case "bad-extra-type":
                Write(front, new NetifTxRequest { Gref = gref, Size = 100, Flags = NetTxFlags.ExtraInfo, Id = 1 });
                WriteExtra(front, new NetifExtraInfo { Type = (NetifExtraType)(5 + rng.Next(250)) });
                front.PushTx();
                return 2;
            case "cross-page":
                Write(front, new NetifTxRequest { Gref = gref, Offset = 4000, Size = 200, Id = 1 });
                front.PushTx();
                return 1;
            case "gso-size-zero":
                Write(front, new NetifTxRequest { Gref = gref, Size = 100, Flags = NetTxFlags.ExtraInfo, Id = 1 });
                WriteExtra(front, new NetifExtraInfo { Type = NetifExtraType.Gso, GsoType = NetifGsoType.TcpV4, GsoSize = 0 });
                front.PushTx();
                return 2;
            case "rx-req-prod-overflow":
                front.PokeRequestProducer(tx: false, front.RxRequestProducer + 600 + (uint)rng.Next(1000));
                return 1;
            default: // "missing-slots": more_data on the last published slot
                Write(front, new NetifTxRequest { Gref = gref, Size = 1000, Flags = NetTxFlags.MoreData, Id = 1 });
                front.PushTx();
                return 1;
        }
    }

    /// <summary>RX requests with bogus grefs, read-only grants and real ones, ids colliding.</summary>
    private static void PostBadRx(TestNetfront front, Random rng)
    {
        for (var i = 0; i < 64; i++)
        {
            var pick = rng.Next(4);
            var gref = pick switch
            {
                0 => (uint)rng.Next(),
                1 => front.TxGrefs[rng.Next(TestNetfront.Slots)],
                _ => front.RxGrefs[rng.Next(TestNetfront.Slots)],
            };
            if (!front.WriteRawRx(new NetifRxRequest { Id = (ushort)rng.Next(8), Gref = gref })) break;
        }
        front.PushRx();
    }

    private static int Write(TestNetfront front, in NetifTxRequest request) => front.WriteRawTx(request) ? 1 : 0;

    private static int WriteExtra(TestNetfront front, NetifExtraInfo extra)
    {
        var raw = default(NetifTxRequest);
        Unsafe.As<NetifTxRequest, NetifExtraInfo>(ref raw) = extra;
        return Write(front, raw);
    }

    private static void WriteMac(Span<byte> into, ulong mac)
    {
        BinaryPrimitives.WriteUInt32BigEndian(into, (uint)(mac >> 16));
        BinaryPrimitives.WriteUInt16BigEndian(into[4..], (ushort)mac);
    }
}
