using System.Runtime.CompilerServices;
using XenIo.Hypervisor.Abi;

namespace XenIo.TestPeer.Core;

/// <summary>
/// Just enough of io/ring.h for the core's cross-process test: a netif tx ring's indices, slots and
/// the notification rules. Deliberately local to the test (the real ring code lives in
/// hypervisor/Rings); shared-memory accesses are Volatile with full barriers where ring.h has mb().
/// </summary>
internal unsafe readonly struct TxRing(byte* page)
{
    public const int Slots = 256;
    private const int SlotSize = 12;

    private readonly byte* _page = page;

    private ref uint ReqProd => ref *(uint*)(_page + SharedRingHeader.ReqProdOffset);
    private ref uint ReqEvent => ref *(uint*)(_page + SharedRingHeader.ReqEventOffset);
    private ref uint RspProd => ref *(uint*)(_page + SharedRingHeader.RspProdOffset);
    private ref uint RspEvent => ref *(uint*)(_page + SharedRingHeader.RspEventOffset);

    public void Initialise()
    {
        new Span<byte>(_page, 4096).Clear();
        ReqEvent = 1;
        RspEvent = 1;
    }

    public ref NetifTxRequest Request(uint index) => ref Unsafe.AsRef<NetifTxRequest>(_page + SharedRingHeader.EntriesOffset + (index & (Slots - 1)) * SlotSize);

    public ref NetifTxResponse Response(uint index) => ref Unsafe.AsRef<NetifTxResponse>(_page + SharedRingHeader.EntriesOffset + (index & (Slots - 1)) * SlotSize);

    public uint ReadReqProd() => Volatile.Read(ref ReqProd);

    public uint ReadRspProd() => Volatile.Read(ref RspProd);

    /// <summary>RING_PUSH_REQUESTS_AND_CHECK_NOTIFY.</summary>
    public bool PushRequests(uint newProd)
    {
        uint old = Volatile.Read(ref ReqProd);
        Volatile.Write(ref ReqProd, newProd);
        Interlocked.MemoryBarrier();
        return newProd - Volatile.Read(ref ReqEvent) < newProd - old;
    }

    /// <summary>RING_PUSH_RESPONSES_AND_CHECK_NOTIFY.</summary>
    public bool PushResponses(uint newProd)
    {
        uint old = Volatile.Read(ref RspProd);
        Volatile.Write(ref RspProd, newProd);
        Interlocked.MemoryBarrier();
        return newProd - Volatile.Read(ref RspEvent) < newProd - old;
    }

    /// <summary>RING_FINAL_CHECK_FOR_REQUESTS: true if requests arrived after all.</summary>
    public bool FinalCheckForRequests(uint reqCons)
    {
        if (ReadReqProd() != reqCons) return true;
        Volatile.Write(ref ReqEvent, reqCons + 1);
        Interlocked.MemoryBarrier();
        return ReadReqProd() != reqCons;
    }

    /// <summary>RING_FINAL_CHECK_FOR_RESPONSES.</summary>
    public bool FinalCheckForResponses(uint rspCons)
    {
        if (ReadRspProd() != rspCons) return true;
        Volatile.Write(ref RspEvent, rspCons + 1);
        Interlocked.MemoryBarrier();
        return ReadRspProd() != rspCons;
    }
}

/// <summary>The bytes request number <c>seq</c> carries: both processes compute them, so every byte is checked.</summary>
internal static class TxPattern
{
    private static readonly byte[] Bytes = Build();

    private static byte[] Build()
    {
        var b = new byte[8192];
        uint x = 0x9E3779B9;
        for (int i = 0; i < b.Length; i++)
        {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b[i] = (byte)x;
        }
        return b;
    }

    public static int Size(ulong seq) => 1 + (int)(seq * 7919 % 1024);

    public static int Offset(ulong seq, int size) => (int)(seq * 104729 % (ulong)(4096 - size + 1));

    public static ReadOnlySpan<byte> Data(ulong seq) => Bytes.AsSpan((int)(seq * 61 % 4096), Size(seq));
}
