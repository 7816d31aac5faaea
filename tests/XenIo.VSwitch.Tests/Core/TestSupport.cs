using System.Buffers.Binary;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;
using Xunit;

namespace XenIo.VSwitch.Tests.Core;

/// <summary>A clock tests move by hand (nanosecond ticks).</summary>
internal sealed class ManualTime : TimeProvider
{
    private long _ticks = 1_000_000_000_000;
    public override long TimestampFrequency => 1_000_000_000;
    public override long GetTimestamp() => _ticks;
    public void Advance(TimeSpan by) => _ticks += (long)(by.TotalSeconds * 1e9);
}

/// <summary>A port that records what the bridge sends it and injects frames as if received.</summary>
internal sealed class RecordingPort(string name, bool record = true) : SwitchPort(name)
{
    private readonly byte[] _buffer = new byte[70000];
    public readonly List<(byte[] Frame, FrameMetadata Metadata)> Sent = [];
    public bool Offloads;
    public bool Split;
    public DropReason Result = DropReason.None;
    public long SentCount;

    public override string Kind => "test";
    public override bool AcceptsGso => Offloads;
    public override bool AcceptsPartialChecksum => Offloads;
    public override bool SplitHorizon => Split;

    protected internal override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        if (Result != DropReason.None) return Result;
        SentCount++;
        if (record) Sent.Add((frame.ToArray(), metadata));
        return DropReason.None;
    }

    public void Inject(ReadOnlySpan<byte> frame) => Inject(frame, FrameMetadata.Plain(frame.Length));

    public void Inject(ReadOnlySpan<byte> frame, FrameMetadata metadata)
    {
        frame.CopyTo(_buffer.AsSpan(PacketBuffer.Headroom));
        metadata.Length = frame.Length;
        Deliver(_buffer, PacketBuffer.Headroom, ref metadata);
    }

    /// <summary>Hands frames over as a draining port does: one bridge call for the whole batch.</summary>
    public void InjectBatch(ReadOnlySpan<PacketBuffer> batch) => Deliver(batch);

    public byte[] Single()
    {
        var only = Assert.Single(Sent);
        return only.Frame;
    }

    public void Clear() => Sent.Clear();
}

internal static class Frame
{
    public static ulong Mac(int n) => 0x0200_0000_0000UL | (uint)n;
    public const ulong Broadcast = 0xFFFF_FFFF_FFFF;

    /// <summary>An Ethernet frame dst, src, optional 802.1Q tag, EtherType 0x88B5 (local experimental), payload.</summary>
    public static byte[] Build(ulong dst, ulong src, int payload = 46, int? vid = null, int pcp = 0)
    {
        var tagLength = vid is null ? 0 : 4;
        var frame = new byte[14 + tagLength + payload];
        WriteMac(frame, dst);
        WriteMac(frame.AsSpan(6), src);
        if (vid is { } v)
        {
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12), 0x8100);
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(14), (ushort)(pcp << 13 | v));
        }
        BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(12 + tagLength), 0x88B5);
        for (var i = 0; i < payload; i++) frame[14 + tagLength + i] = (byte)(i * 7 + 1);
        return frame;
    }

    public static void WriteMac(Span<byte> to, ulong mac)
    {
        BinaryPrimitives.WriteUInt32BigEndian(to, (uint)(mac >> 16));
        BinaryPrimitives.WriteUInt16BigEndian(to[4..], (ushort)mac);
    }

    public static int? Vid(byte[] frame) =>
        BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(12)) == 0x8100 ? BinaryPrimitives.ReadUInt16BigEndian(frame.AsSpan(14)) & 0xFFF : null;

    /// <summary>The frame with its tag removed (what the untagged form must equal byte for byte).</summary>
    public static byte[] Untag(byte[] frame) =>
        Vid(frame) is null ? frame : [.. frame.AsSpan(0, 12), .. frame.AsSpan(16)];
}
