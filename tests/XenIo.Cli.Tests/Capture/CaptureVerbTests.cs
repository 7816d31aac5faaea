using XenIo.Hypervisor.Daemons;
using Xunit;

namespace XenIo.Cli.Tests.Capture;

/// <summary><c>xenio capture -w FILE</c> with a file that cannot be written, at the start or partway: one line naming it, exit code 1.</summary>
public sealed class CaptureVerbTests : IDisposable
{
    private readonly string _run = Directory.CreateTempSubdirectory("xenio-capverb-").FullName;

    public void Dispose() => Directory.Delete(_run, true);

    [Fact]
    public void An_output_file_in_a_missing_directory_is_refused_before_netback_is_asked()
    {
        var target = Path.Combine(_run, "nonexistent", "x.pcap");
        var (code, _, err) = XenioProcess.Run(_run, "capture", "br0", "-w", target);
        Assert.Equal(1, code);
        Assert.StartsWith($"xenio: cannot write {target}: ", err);
        Assert.Contains("-w", err);
        Assert.DoesNotContain("Unhandled", err);
        // The file is checked first: no netback runs here, and the message is about the file, not netback.
        Assert.DoesNotContain("netback", err);
    }

    [Fact]
    public async Task A_capture_netback_answers_is_not_started_into_a_file_that_cannot_be_written()
    {
        // A netback that answers every capture with a pcap header: the file must be refused all the same,
        // in one line, not as an unhandled exception once frames arrive.
        var asked = 0;
        await using var netback = new UnixHttpServer(Path.Combine(_run, "netback.sock"), async (_, response, ct) =>
        {
            Interlocked.Increment(ref asked);
            await response.StartChunkedAsync(200, "application/vnd.tcpdump.pcap");
            await response.WriteChunkAsync(new byte[24], ct);
            await response.EndChunksAsync();
        });
        var target = Path.Combine(_run, "nonexistent", "x.pcap");
        var (code, _, err) = XenioProcess.Run(_run, "capture", "br0", "-w", target);
        Assert.Equal(1, code);
        Assert.StartsWith($"xenio: cannot write {target}: ", err);
        Assert.DoesNotContain("Unhandled", err);
        Assert.Equal(0, Volatile.Read(ref asked));
    }

    [Fact]
    public void An_output_path_that_is_a_directory_is_refused_naming_it()
    {
        var (code, _, err) = XenioProcess.Run(_run, "capture", "br0", "-w", _run);
        Assert.Equal(1, code);
        Assert.StartsWith($"xenio: cannot write {_run}: ", err);
        Assert.DoesNotContain("Unhandled", err);
    }

    [Fact]
    public async Task A_file_that_fails_partway_ends_the_capture_with_one_line_naming_it()
    {
        // /dev/full opens but every write fails with ENOSPC, as a disk that fills up mid-capture would.
        await using var netback = new UnixHttpServer(Path.Combine(_run, "netback.sock"), async (_, response, ct) =>
        {
            await response.StartChunkedAsync(200, "application/vnd.tcpdump.pcap");
            var header = new byte[24];
            BitConverter.TryWriteBytes(header.AsSpan(0), 0xa1b2c3d4u);
            await response.WriteChunkAsync(header, ct);
            for (var i = 0; i < 3; i++)
            {
                var record = new byte[16 + 60];
                BitConverter.TryWriteBytes(record.AsSpan(8), 60);
                BitConverter.TryWriteBytes(record.AsSpan(12), 60);
                await response.WriteChunkAsync(record, ct);
            }
            await response.EndChunksAsync();
        });
        var (code, _, err) = XenioProcess.Run(_run, "capture", "br0", "-w", "/dev/full");
        Assert.Equal(1, code);
        Assert.Equal("xenio: cannot write /dev/full: No space left on device", err.TrimEnd('\n'));
        Assert.DoesNotContain("Unhandled", err);
    }
}
