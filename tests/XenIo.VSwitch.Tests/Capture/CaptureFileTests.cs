using XenIo.Tests;
using XenIo.VSwitch.Capture;
using XenIo.VSwitch.Core;
using XenIo.VSwitch.Tests.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Capture;

/// <summary>
/// A persistent mirror's file across a netback restart: what was captured before stays, a record cut
/// short by a crash is trimmed, and tshark reads the whole file; a file the mirror did not write is refused untouched.
/// </summary>
public sealed class CaptureFileTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-capfile").FullName;
    private readonly Bridge _bridge = new("br0", time: new ManualTime());
    private readonly RecordingPort _a = new("a");
    private readonly RecordingPort _b = new("b");

    public CaptureFileTests()
    {
        _bridge.AddPort(_a);
        _bridge.AddPort(_b);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>One netback life: opens the file as the reconciler does, mirrors <paramref name="frames"/> ICMP frames from port a, closes.</summary>
    private void CaptureOnce(string file, bool pcapNg, int frames, int firstId, int snaplen = 200)
    {
        using var mirror = new Mirror("m", FileCaptureSink.Open(file, pcapNg, snaplen), new MirrorSelection(new HashSet<string> { "a" }, CaptureDirection.Ingress), snaplen, clock: new SteppingClock());
        mirror.Attach(_bridge);
        for (var i = 0; i < frames; i++) _a.Inject(Packets.Icmp(1, firstId + i));
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_restart_continues_the_file_and_trims_a_torn_record(bool pcapNg)
    {
        var tshark = Requires.Tool("tshark");
        var file = Path.Combine(_dir, pcapNg ? "m.pcapng" : "m.pcap");
        CaptureOnce(file, pcapNg, frames: 3, firstId: 1);
        // A crash mid-write: the start of a record and no more.
        using (var torn = new FileStream(file, FileMode.Append)) torn.Write(pcapNg ? [6, 0, 0, 0, 0x70, 0, 0, 0, 0, 0] : new byte[] { 1, 2, 3, 4, 5, 6, 7, 8, 60, 0, 0, 0 });
        CaptureOnce(file, pcapNg, frames: 2, firstId: 4);

        var ids = Tshark.Fields(tshark, file, null, "icmp.ident").Select(r => r[0]).ToList();
        Assert.Equal(["1", "2", "3", "4", "5"], ids);
    }

    [Fact]
    public void A_missing_or_empty_file_starts_afresh()
    {
        var file = Path.Combine(_dir, "new.pcap");
        using (var stream = CaptureFile.OpenResuming(file, pcapNg: false, snaplen: 200, out var continues))
        {
            Assert.False(continues);
            Assert.Equal(0, stream.Length);
        }
        using (var stream = CaptureFile.OpenResuming(file, pcapNg: false, snaplen: 200, out var continues))
            Assert.False(continues);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void A_file_the_mirror_did_not_write_is_refused_and_left_alone(bool pcapNg)
    {
        var file = Path.Combine(_dir, "notes.txt");
        File.WriteAllText(file, "not a capture at all, just text\n");
        AssertRefusedUntouched(file, pcapNg);
    }

    [Fact]
    public void A_pcap_of_another_snaplen_is_refused_and_left_alone()
    {
        var file = Path.Combine(_dir, "short.pcap");
        CaptureOnce(file, pcapNg: false, frames: 1, firstId: 1, snaplen: 96);
        AssertRefusedUntouched(file, pcapNg: false);
    }

    private static void AssertRefusedUntouched(string file, bool pcapNg)
    {
        var before = File.ReadAllBytes(file);
        var e = Assert.Throws<IOException>(() => CaptureFile.OpenResuming(file, pcapNg, snaplen: 200, out _));
        Assert.Contains(file, e.Message);
        Assert.Contains("move it away", e.Message);
        Assert.Equal(before, File.ReadAllBytes(file));
    }
}
