using System.Runtime.InteropServices;
using BenchmarkDotNet.Attributes;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;

namespace XenIo.Bench.Rings;

/// <summary>
/// One thread playing both ends of a netif tx ring: the cost of the ring code itself per request
/// (write, push, copy-once consume, respond, push, reap, final checks), and proof that it allocates nothing.
/// </summary>
[MemoryDiagnoser]
public unsafe class RingMicroBenchmarks
{
    private const int Batch = 64;
    private void* _memory;
    private FrontRing<NetifTxRequest, NetifTxResponse> _front;
    private BackRing<NetifTxRequest, NetifTxResponse> _back;

    [GlobalSetup]
    public void Setup()
    {
        _memory = NativeMemory.AlignedAlloc(RingGeometry.PageSize, RingGeometry.PageSize);
        _front = FrontRing<NetifTxRequest, NetifTxResponse>.Init((nint)_memory, RingGeometry.PageSize);
        _back = BackRing<NetifTxRequest, NetifTxResponse>.Attach((nint)_memory, RingGeometry.PageSize);
    }

    [GlobalCleanup]
    public void Cleanup() => NativeMemory.AlignedFree(_memory);

    [Benchmark(OperationsPerInvoke = Batch)]
    public int RoundTrip()
    {
        int sum = 0;
        for (int i = 0; i < Batch; i++)
            _front.TryWriteRequest(new NetifTxRequest { Gref = (uint)i, Id = (ushort)i, Size = 60 });
        _front.PushRequests();
        while (_back.TryConsumeRequest(out var req))
        {
            sum += req.Size;
            _back.TryWriteResponse(new NetifTxResponse { Id = req.Id, Status = NetifStatus.Okay });
        }
        _back.PushResponses();
        _back.FinalCheckForRequests();
        while (_front.TryConsumeResponse(out var rsp)) sum += rsp.Id;
        _front.FinalCheckForResponses();
        return sum;
    }
}
