using System.Buffers;
using XenIo.Consoled.Buffers;
using XenIo.Consoled.Rings;
using XenIo.Consoled.Telnet;
using XenIo.Hypervisor.Rings;
using XenIo.Tests;
using Xunit;

namespace XenIo.Consoled.Tests;

/// <summary>The per-byte paths allocate nothing once warm (the micro benchmarks show the same with MemoryDiagnoser).</summary>
public sealed class AllocationTests
{
    private static long AllocatedBy(Action action) => SteadyStateAllocation.BytesOver(1000, action);

    [Fact]
    public void Telnet_encode_and_receive_do_not_allocate()
    {
        var random = new Random(3);
        var input = new byte[2048];
        random.NextBytes(input);
        var output = new byte[TelnetProtocol.MaxEncodedLength(input.Length)];
        var data = new byte[input.Length];
        var replies = new ArrayBufferWriter<byte>(64 * 1024);
        var telnet = new TelnetProtocol();
        Assert.Equal(0, AllocatedBy(() => telnet.Encode(input, output)));
        Assert.Equal(0, AllocatedBy(() =>
        {
            replies.ResetWrittenCount();
            telnet.Receive(input, data, replies, null);
        }));
    }

    [Fact]
    public void Ring_and_queues_do_not_allocate()
    {
        using var page = new NativeConsolePage();
        var ring = new ConsoleRing(page.Address);
        var guest = new ConsoleFrontendRing(page.Address);
        var chunk = new byte[2048];
        var sink = new byte[4096];
        Assert.Equal(0, AllocatedBy(() =>
        {
            guest.WriteOutput(chunk);
            ring.ReadOutput(sink, out _);
            ring.WriteInput(chunk.AsSpan(0, 512), out _);
            guest.ReadInput(sink);
        }));
        var queue = new ViewerQueue();
        var buffer = new ConsoleOutputBuffer();
        var scrollback = new Scrollback();
        Assert.Equal(0, AllocatedBy(() =>
        {
            queue.TryWriteData(chunk);
            queue.Take(sink);
            buffer.Append(chunk);
            buffer.Take(sink);
            scrollback.Append(chunk);
        }));
    }
}
