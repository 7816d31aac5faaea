using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Events;
using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;

namespace XenIo.TestPeer.Core;

/// <summary>
/// Roles for the hypervisor core's cross-process tests and benchmarks. The guest roles hold only the
/// descriptors a domain is handed (memory, hypercall connection); the backend roles only a dom0
/// hypercall connection. Control-plane facts (ring ref, port) travel over stdin/stdout in place of xenstore.
/// </summary>
internal static unsafe class CoreRoles
{
    private const int WaitMs = 10_000;

    /// <summary>args: handoff-socket count. Produces <c>count</c> tx requests with data, checks every response.</summary>
    [PeerRole("core-netfront")]
    public static int Netfront(string[] args)
    {
        string handoff = args[0];
        ulong count = ulong.Parse(args[1]);
        using var guest = GuestDomain.Attach(DomainHandoff.Receive(handoff));
        var grants = guest.GrantTable;

        uint ringFrame = guest.Pages.Allocate();
        var ring = new TxRing(PageAddress(guest.Memory.Page(ringFrame)));
        ring.Initialise();
        uint ringRef = grants.GrantAccess(DomainIds.Dom0, ringFrame, readOnly: false);
        var bufferFrames = new uint[TxRing.Slots];
        for (int i = 0; i < bufferFrames.Length; i++) bufferFrames[i] = guest.Pages.Allocate();
        var inflight = new uint[TxRing.Slots];
        using var channel = guest.Hypercalls.AllocUnbound(DomainIds.Dom0);
        Console.WriteLine($"ring {ringRef} {channel.Port}");
        Console.Out.Flush();

        uint reqProdPvt = 0, rspCons = 0;
        ulong sent = 0, completed = 0;
        while (completed < count)
        {
            uint before = reqProdPvt;
            while (sent < count && reqProdPvt - rspCons < TxRing.Slots)
            {
                ushort id = (ushort)(reqProdPvt & (TxRing.Slots - 1));
                var data = TxPattern.Data(sent);
                int offset = TxPattern.Offset(sent, data.Length);
                data.CopyTo(guest.Memory.Page(bufferFrames[id]).Slice(offset));
                uint gref = grants.GrantAccess(DomainIds.Dom0, bufferFrames[id], readOnly: true);
                inflight[id] = gref;
                ref var req = ref ring.Request(reqProdPvt);
                req.Gref = gref;
                req.Offset = (ushort)offset;
                req.Flags = 0;
                req.Id = id;
                req.Size = (ushort)data.Length;
                reqProdPvt++;
                sent++;
            }
            if (reqProdPvt != before && ring.PushRequests(reqProdPvt)) channel.Notify();

            uint rp = ring.ReadRspProd();
            Interlocked.MemoryBarrier();
            while (rspCons != rp)
            {
                var rsp = ring.Response(rspCons);
                ushort expected = (ushort)(rspCons & (TxRing.Slots - 1));
                if (rsp.Id != expected || rsp.Status != NetifStatus.Okay)
                    return Fail($"response {completed}: id {rsp.Id} status {rsp.Status}, expected id {expected} okay");
                if (!grants.EndAccess(inflight[expected]))
                    return Fail($"response {completed}: grant {inflight[expected]} still in use after its response");
                rspCons++;
                completed++;
            }
            bool canProduce = sent < count && reqProdPvt - rspCons < TxRing.Slots;
            if (!canProduce && completed < count && !ring.FinalCheckForResponses(rspCons))
            {
                if (!channel.Wait(WaitMs)) return Fail($"no response for {WaitMs} ms at {completed}");
                if (channel.PeerClosed) return Fail($"backend went away at {completed}");
            }
        }
        // The backend unmaps the ring when it is done; then the ring grant can be ended.
        var deadline = Environment.TickCount64 + WaitMs;
        while (!grants.EndAccess(ringRef))
        {
            if (Environment.TickCount64 > deadline) return Fail("ring grant still mapped after the backend finished");
            Thread.Sleep(5);
        }
        Console.WriteLine($"done {completed}");
        return 0;
    }

    /// <summary>args: hypercall-socket domid count; reads "ring REF PORT" from stdin. Consumes, grant-copies and checks every byte.</summary>
    [PeerRole("core-netback")]
    public static int Netback(string[] args)
    {
        string socket = args[0];
        ushort domid = ushort.Parse(args[1]);
        ulong count = ulong.Parse(args[2]);
        using var hypercalls = HypercallClient.Connect(socket);
        using var foreign = hypercalls.MapForeign(domid);
        var line = Console.ReadLine()?.Split(' ') ?? [];
        if (line is not ["ring", var r, var p]) return Fail("expected 'ring REF PORT'");
        var status = foreign.Map(uint.Parse(r), readOnly: false, out var mapping);
        if (status != GrantStatus.Okay) return Fail($"ring map: {status}");
        var ring = new TxRing(mapping.Address);
        using var channel = hypercalls.BindInterdomain(domid, uint.Parse(p));

        const int Batch = 64;
        var ops = new GrantCopyOp[Batch];
        var ids = new ushort[Batch];
        var local = new byte[Batch * 4096];
        uint reqCons = 0, rspProdPvt = 0;
        ulong seq = 0, bytes = 0;
        while (seq < count)
        {
            uint rp = ring.ReadReqProd();
            Interlocked.MemoryBarrier();
            if (rp - rspProdPvt > TxRing.Slots) return Fail("request producer overflow");
            int n = 0;
            while (reqCons != rp && n < Batch)
            {
                var req = ring.Request(reqCons); // copied out of shared memory once (XSA-155)
                if (req.Size == 0 || req.Offset + req.Size > 4096) return Fail($"request {seq + (ulong)n}: bad offset/size {req.Offset}/{req.Size}");
                ops[n] = GrantCopyOp.FromGrant(domid, req.Gref, req.Offset, (uint)(n * 4096), req.Size);
                ids[n] = req.Id;
                reqCons++;
                n++;
            }
            if (n > 0)
            {
                foreign.Copy(ops.AsSpan(0, n), local);
                for (int i = 0; i < n; i++, seq++)
                {
                    if (ops[i].Status != GrantStatus.Okay) return Fail($"request {seq}: grant copy {ops[i].Status}");
                    var expected = TxPattern.Data(seq);
                    if (ops[i].Length != expected.Length || !local.AsSpan(i * 4096, expected.Length).SequenceEqual(expected))
                        return Fail($"request {seq}: data differs");
                    bytes += (ulong)expected.Length;
                    ref var rsp = ref ring.Response(rspProdPvt);
                    rsp.Id = ids[i];
                    rsp.Status = NetifStatus.Okay;
                    rspProdPvt++;
                }
                if (ring.PushResponses(rspProdPvt)) channel.Notify();
                continue;
            }
            if (!ring.FinalCheckForRequests(reqCons))
            {
                if (!channel.Wait(WaitMs)) return Fail($"no request for {WaitMs} ms at {seq}");
                if (channel.PeerClosed) return Fail($"frontend went away at {seq}");
            }
        }
        if (foreign.Unmap(mapping) != GrantStatus.Okay) return Fail("ring unmap");
        Console.WriteLine($"verified {seq} {bytes}");
        return 0;
    }

    /// <summary>args: hypercall-socket domid ref[:ro]…; maps every ref, prints "mapped N", then waits to be killed.</summary>
    [PeerRole("core-map-holder")]
    public static int MapHolder(string[] args)
    {
        using var hypercalls = HypercallClient.Connect(args[0]);
        using var foreign = hypercalls.MapForeign(ushort.Parse(args[1]));
        int mapped = 0;
        foreach (var spec in args[2..])
        {
            bool readOnly = spec.EndsWith(":ro", StringComparison.Ordinal);
            uint gref = uint.Parse(readOnly ? spec[..^3] : spec);
            var status = foreign.Map(gref, readOnly, out var mapping);
            if (status != GrantStatus.Okay) return Fail($"map {spec}: {status}");
            // Touch the page so the mapping is real.
            if (!readOnly) mapping.WritablePage[0] = 0xAB;
            _ = mapping.Page[0];
            mapped++;
        }
        Console.WriteLine($"mapped {mapped}");
        Console.Out.Flush();
        Console.In.ReadToEnd();
        return 0;
    }

    /// <summary>args: handoff-socket. A guest that echoes every notification on a port it allocates for dom0.</summary>
    [PeerRole("core-evtchn-echo")]
    public static int EventEcho(string[] args)
    {
        using var guest = GuestDomain.Attach(DomainHandoff.Receive(args[0]));
        using EventChannel channel = guest.Hypercalls.AllocUnbound(DomainIds.Dom0);
        Console.WriteLine($"port {channel.Port}");
        Console.Out.Flush();
        while (true)
        {
            channel.Wait(-1);
            if (channel.PeerClosed) return 0;
            channel.Notify();
        }
    }

    /// <summary>
    /// args: run-directory budget-pages. hyperd's core services as a process: prints "ready SOCKET",
    /// then takes commands on stdin ("create DOMID FRAMES GRANT-FRAMES HANDOFF-SOCKET", "destroy DOMID")
    /// and answers each with "ok" or "error …"; exits at end of input.
    /// </summary>
    [PeerRole("core-host")]
    public static int Host(string[] args)
    {
        using var host = new CoreHost(args[0], long.Parse(args[1]));
        Console.WriteLine($"ready {host.HypercallSocketPath}");
        Console.Out.Flush();
        var handoffs = new List<Task>();
        while (Console.ReadLine() is { } line)
        {
            var words = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            try
            {
                switch (words)
                {
                    case ["create", var d, var f, var g, var socket]:
                        var domain = host.TryCreateDomain(ushort.Parse(d), $"d{d}", uint.Parse(f), uint.Parse(g));
                        if (domain is null)
                        {
                            Console.WriteLine("error page pool exhausted");
                            break;
                        }
                        handoffs.Add(DomainHandoff.HandOffAsync(domain, socket));
                        Console.WriteLine("ok");
                        break;
                    case ["destroy", var d]:
                        host.DestroyDomain(ushort.Parse(d));
                        Console.WriteLine("ok");
                        break;
                    default:
                        Console.WriteLine($"error unknown command '{line}'");
                        break;
                }
            }
            catch (Exception e) when (e is FormatException or OverflowException or ArgumentException or InvalidOperationException or IOException)
            {
                Console.WriteLine($"error {e.Message}");
            }
            Console.Out.Flush();
        }
        return 0;
    }

    private static byte* PageAddress(Span<byte> page) => (byte*)System.Runtime.CompilerServices.Unsafe.AsPointer(ref MemoryMarshal.GetReference(page));

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 1;
    }
}
