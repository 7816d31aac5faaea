using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Rings;

namespace XenIo.TestPeer.Blk;

/// <summary>
/// A hostile blkfront holding only a domU's descriptors (memory and hypercall connection, received by
/// DomainHandoff): one ring page and an event channel, then requests that must each be refused —
/// unknown operations, bad segment counts, bad sector ranges (overflowing ones too), bad grant refs,
/// hostile INDIRECT requests and pages. Every response must be an error for the request sent, with its
/// padding zero (XSA-216); one that is not ends the run with exit code 1.
/// </summary>
public static unsafe class HostileBlkfront
{
    /// <summary>args: handoff socket, disk sectors (512-byte units), request count. Stdout: "ring REF PORT", then "ok N" or a failure line.</summary>
    [PeerRole("blk-hostile")]
    public static int Run(string[] args)
    {
        var descriptors = DomainHandoff.Receive(args[0]);
        ulong sectors = ulong.Parse(args[1], CultureInfo.InvariantCulture);
        long count = long.Parse(args[2], CultureInfo.InvariantCulture);
        using var guest = GuestDomain.Attach(descriptors);

        uint ringFrame = guest.Pages.Allocate();
        guest.Memory.Page(ringFrame).Clear();
        uint ringRef = guest.GrantTable.GrantAccess(DomainIds.Dom0, ringFrame, readOnly: false);
        using var channel = guest.Hypercalls.AllocUnbound(DomainIds.Dom0);
        // Grants that are valid but used wrongly, and pages whose content is hostile.
        uint dataFrame = guest.Pages.Allocate();
        uint readOnlyRef = guest.GrantTable.GrantAccess(DomainIds.Dom0, dataFrame, readOnly: true);
        uint otherDomainRef = guest.GrantTable.GrantAccess(7, dataFrame, readOnly: false);
        uint indirectFrame = guest.Pages.Allocate();
        uint indirectRef = guest.GrantTable.GrantAccess(DomainIds.Dom0, indirectFrame, readOnly: false);
        uint badRefs = guest.GrantTable.EntryCount;
        var indirectPage = MemoryMarshal.Cast<byte, BlkifRequestSegment>(guest.Memory.Page(indirectFrame));
        var rng = new Random(12345);
        // Segments in the indirect page are valid in shape but name grants the backend cannot use.
        for (int i = 0; i < indirectPage.Length; i++)
            indirectPage[i] = new BlkifRequestSegment { Gref = i % 2 == 0 ? readOnlyRef : otherDomainRef, FirstSect = 0, LastSect = 7 };

        Console.WriteLine($"ring {ringRef} {channel.Port}");
        Console.Out.Flush();
        if (Console.ReadLine() != "go") return 2;

        byte* page = (byte*)Unsafe.AsPointer(ref MemoryMarshal.GetReference(guest.Memory.Page(ringFrame)));
        var ring = FrontRing<BlkifRequest, BlkifResponse>.Init((nint)page, 4096);
        var expected = new BlkifOperation[ring.Size];
        var inFlight = new bool[ring.Size];
        long sent = 0, answered = 0;
        ulong nextId = 0;
        while (answered < count)
        {
            int batch = 0;
            while (sent < count && ring.FreeRequests > 0)
            {
                int slot = (int)(nextId % (ulong)ring.Size);
                if (inFlight[slot]) break;
                var req = Hostile(rng, sectors, badRefs, readOnlyRef, otherDomainRef, indirectRef, out var op);
                req.Id = nextId | ((ulong)rng.Next() << 32);
                expected[slot] = op;
                inFlight[slot] = true;
                ring.TryWriteRequest(req);
                nextId++;
                sent++;
                batch++;
            }
            if (batch > 0 && ring.PushRequests()) channel.Notify();
            while (ring.TryConsumeResponse(out var rsp))
            {
                int slot = (int)((uint)rsp.Id % (uint)ring.Size);
                if (!inFlight[slot]) return Fail($"response for id {rsp.Id} that is not in flight");
                inFlight[slot] = false;
                if (rsp.Status == BlkifStatus.Okay) return Fail($"request {rsp.Id & 0xFFFFFFFF} ({expected[slot]}) was answered OKAY");
                if (rsp.Status is not (BlkifStatus.Error or BlkifStatus.EOpNotSupp)) return Fail($"status {rsp.Status}");
                if (rsp.Operation != expected[slot]) return Fail($"response operation {rsp.Operation}, expected {expected[slot]}");
                var raw = new ReadOnlySpan<byte>(&rsp, sizeof(BlkifResponse));
                if (raw[9] != 0 || raw[12] != 0 || raw[13] != 0 || raw[14] != 0 || raw[15] != 0) return Fail("response padding not zero (XSA-216)");
                answered++;
            }
            if (ring.IsBroken) return Fail($"ring broken: {ring.Error}");
            if (answered < sent && !ring.FinalCheckForResponses())
            {
                if (!channel.Wait(10_000)) return Fail($"no response for 10 s ({answered} of {sent} answered)");
                if (channel.PeerClosed) return Fail("blkback closed the event channel");
            }
        }
        Console.WriteLine($"ok {answered}");
        Console.Out.Flush();

        // Last: a producer index no ring can hold. Blkback must drop this ring (and only it).
        if (Console.ReadLine() == "break")
        {
            Volatile.Write(ref *(uint*)page, ring.ResponseConsumer + 1000);
            channel.Notify();
            Console.WriteLine("broken");
            Console.Out.Flush();
            Console.ReadLine();
        }
        return 0;
    }

    private static int Fail(string why)
    {
        Console.WriteLine($"fail {why}");
        Console.Out.Flush();
        return 1;
    }

    /// <summary>One request that no correct backend can carry out; <paramref name="responseOp"/> is what the answer must name.</summary>
    private static BlkifRequest Hostile(Random rng, ulong sectors, uint badRefs, uint readOnlyRef, uint otherDomainRef, uint indirectRef, out BlkifOperation responseOp)
    {
        var req = default(BlkifRequest);
        var rw = rng.Next(2) == 0 ? BlkifOperation.Read : BlkifOperation.Write;
        switch (rng.Next(10))
        {
            case 0: // an operation Xen does not define (or the reserved one)
                req.Operation = (BlkifOperation)(rng.Next(2) == 0 ? 4 : rng.Next(7, 256));
                req.NrSegments = (byte)rng.Next(256);
                break;
            case 1: // no segments, or more than 11
                req.Operation = rw;
                req.NrSegments = (byte)(rng.Next(2) == 0 ? 0 : rng.Next(12, 256));
                break;
            case 2: // first_sect > last_sect, or last_sect past the page
            {
                req.Operation = rw;
                req.NrSegments = 1;
                byte first = (byte)rng.Next(8), last = (byte)rng.Next(0, 256);
                if (last >= first && last < 8) last = (byte)(first == 0 ? 8 + rng.Next(248) : first - 1);
                req.Seg[0] = new BlkifRequestSegment { Gref = readOnlyRef, FirstSect = first, LastSect = last };
                break;
            }
            case 3: // a range past the end of the disk, some of them wrapping around 2^64
                req.Operation = rw;
                req.NrSegments = 1;
                req.SectorNumber = rng.Next(3) switch { 0 => sectors - (ulong)rng.Next(0, 7), 1 => ulong.MaxValue - (ulong)rng.Next(8), _ => sectors + (ulong)rng.NextInt64(1, long.MaxValue) };
                req.Seg[0] = new BlkifRequestSegment { Gref = readOnlyRef, FirstSect = 0, LastSect = 7 };
                break;
            case 4: // grant refs past the table, not granted to dom0, or read-only for a READ (which writes guest memory)
                req.Operation = rw;
                req.NrSegments = (byte)rng.Next(1, 12);
                req.SectorNumber = (ulong)rng.NextInt64(0, (long)(sectors - 88));
                for (int i = 0; i < req.NrSegments; i++)
                {
                    uint gref = rw == BlkifOperation.Read && i == 0 ? readOnlyRef : (rng.Next(2) == 0 ? badRefs + (uint)rng.Next(1 << 20) : otherDomainRef);
                    req.Seg[i] = new BlkifRequestSegment { Gref = gref, FirstSect = 0, LastSect = 7 };
                }
                if (rw == BlkifOperation.Write) req.Seg[0].Gref = otherDomainRef;
                break;
            case 5: // DISCARD past the end, or with flag bits that do not exist
            {
                var d = new BlkifRequestDiscard
                {
                    Operation = BlkifOperation.Discard,
                    Flag = (byte)(rng.Next(2) == 0 ? 2 << rng.Next(6) : 0),
                    SectorNumber = (ulong)rng.NextInt64(0, (long)sectors),
                };
                d.NrSectors = d.Flag != 0 ? 8 : sectors - d.SectorNumber + (ulong)rng.NextInt64(1, 1 << 20);
                MemoryMarshal.Write(MemoryMarshal.AsBytes(new Span<BlkifRequest>(ref req)), in d);
                responseOp = BlkifOperation.Discard;
                return req;
            }
            case 6: // INDIRECT whose inner operation is not READ/WRITE, or with 0 or too many segments
            {
                var ind = new BlkifRequestIndirect
                {
                    Operation = BlkifOperation.Indirect,
                    IndirectOp = rng.Next(2) == 0 ? (BlkifOperation)rng.Next(2, 256) : rw,
                };
                ind.NrSegments = ind.IndirectOp is BlkifOperation.Read or BlkifOperation.Write
                    ? (ushort)(rng.Next(2) == 0 ? 0 : rng.Next(257, 65536)) : (ushort)rng.Next(1, 256);
                ind.IndirectGrefs[0] = indirectRef;
                MemoryMarshal.Write(MemoryMarshal.AsBytes(new Span<BlkifRequest>(ref req)), in ind);
                responseOp = ind.IndirectOp;
                return req;
            }
            case 7: // INDIRECT naming an indirect page it cannot read
            {
                var ind = new BlkifRequestIndirect { Operation = BlkifOperation.Indirect, IndirectOp = rw, NrSegments = (ushort)rng.Next(1, 257) };
                ind.IndirectGrefs[0] = rng.Next(2) == 0 ? badRefs + (uint)rng.Next(1000) : otherDomainRef;
                MemoryMarshal.Write(MemoryMarshal.AsBytes(new Span<BlkifRequest>(ref req)), in ind);
                responseOp = rw;
                return req;
            }
            case 8: // INDIRECT whose page lists segments with unusable grants (read-only / another domain's)
            {
                var ind = new BlkifRequestIndirect
                {
                    Operation = BlkifOperation.Indirect, IndirectOp = BlkifOperation.Write, NrSegments = (ushort)rng.Next(2, 257),
                    SectorNumber = (ulong)rng.NextInt64(0, (long)(sectors - 2048)),
                };
                ind.IndirectGrefs[0] = indirectRef;
                MemoryMarshal.Write(MemoryMarshal.AsBytes(new Span<BlkifRequest>(ref req)), in ind);
                responseOp = BlkifOperation.Write;
                return req;
            }
            default: // FLUSH / BARRIER carrying data from a grant the backend may not use
                req.Operation = rng.Next(2) == 0 ? BlkifOperation.FlushDiskCache : BlkifOperation.WriteBarrier;
                req.NrSegments = 1;
                req.SectorNumber = (ulong)rng.NextInt64(0, (long)(sectors - 8));
                req.Seg[0] = new BlkifRequestSegment { Gref = rng.Next(2) == 0 ? otherDomainRef : badRefs + 5, FirstSect = 0, LastSect = 7 };
                break;
        }
        responseOp = req.Operation;
        return req;
    }
}
