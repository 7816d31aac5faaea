using System.Buffers;
using BenchmarkDotNet.Attributes;
using XenIo.Consoled.Buffers;
using XenIo.Consoled.Rings;
using XenIo.Consoled.Telnet;
using XenIo.Hypervisor.Rings;

namespace XenIo.Bench.Consoles;

/// <summary>The per-byte paths of consoled: telnet encode/decode, the console ring, a viewer queue. No allocation expected.</summary>
[MemoryDiagnoser]
public class ConsoleMicroBenchmarks
{
    private readonly byte[] _guestOutput = new byte[2048];
    private readonly byte[] _clientInput = new byte[2048];
    private readonly byte[] _encoded = new byte[TelnetProtocol.MaxEncodedLength(2048)];
    private readonly byte[] _decoded = new byte[2048];
    private readonly ArrayBufferWriter<byte> _replies = new(4096);
    private readonly TelnetProtocol _telnet = new();
    private readonly ViewerQueue _queue = new(1024 * 1024);
    private NativeConsolePage _page = null!;
    private ConsoleRing _ring = null!;
    private ConsoleFrontendRing _frontend = null!;

    [GlobalSetup]
    public void Setup()
    {
        var random = new Random(5);
        random.NextBytes(_guestOutput);
        random.NextBytes(_clientInput);
        _page = new NativeConsolePage();
        _ring = new ConsoleRing(_page.Address);
        _frontend = new ConsoleFrontendRing(_page.Address);
    }

    [GlobalCleanup]
    public void Cleanup() => _page.Dispose();

    [Benchmark]
    public int TelnetEncode2K() => _telnet.Encode(_guestOutput, _encoded);

    [Benchmark]
    public int TelnetReceive2K()
    {
        _replies.ResetWrittenCount();
        return _telnet.Receive(_clientInput, _decoded, _replies, null);
    }

    [Benchmark]
    public int RingRoundTrip2K()
    {
        _frontend.WriteOutput(_guestOutput);
        _ring.ReadOutput(_decoded, out int read);
        return read;
    }

    [Benchmark]
    public int ViewerQueue2K()
    {
        _queue.TryWriteData(_guestOutput);
        return _queue.Take(_decoded);
    }
}
