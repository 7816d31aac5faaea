using System.Buffers.Binary;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;

namespace XenIo.Bench.VSwitch;

/// <summary>
/// The traffic mix the issue fixes for the switch core: 64-byte frames between 1,024 MACs spread over
/// 4 ports, 1 % broadcast, MACs already learned, arriving in bursts of 32 per port. Destination ports copy each frame into a buffer of
/// their own (the one copy a frame costs); the baseline copies the same frames to the same destinations
/// with the destinations already known, so the ratio is what switching costs on top of moving bytes.
/// </summary>
internal sealed class SwitchWorkload
{
    public const int Ports = 4;
    public const int Macs = 1024;

    private readonly byte[][] _frames;
    private readonly int[] _ingress;
    private readonly int[][] _destinations;
    private readonly SinkPort[] _ports = new SinkPort[Ports];
    private readonly byte[][] _copyTargets = new byte[Ports][];
    private readonly PacketBuffer[][] _batches;
    private readonly int[] _batchIngress;

    public SwitchWorkload(int frameCount = 8192, int frameLength = 64, int seed = 1)
    {
        Bridge = new Bridge("bench0");
        for (var p = 0; p < Ports; p++)
        {
            _ports[p] = new SinkPort($"p{p}");
            Bridge.AddPort(_ports[p]);
            _copyTargets[p] = new byte[2048];
        }
        var random = new Random(seed);
        _frames = new byte[frameCount][];
        _ingress = new int[frameCount];
        _destinations = new int[frameCount][];
        for (var i = 0; i < frameCount; i++)
        {
            // Ports hand frames over in bursts (a TAP drained per wake-up): 32 from one port, then the next.
            var port = i / 32 % Ports;
            var src = random.Next(Macs / Ports) * Ports + port;
            var broadcast = random.Next(100) == 0;
            int dst;
            do dst = random.Next(Macs); while (dst % Ports == src % Ports);
            var frame = new byte[PacketBuffer.Headroom + frameLength];
            var f = frame.AsSpan(PacketBuffer.Headroom);
            WriteMac(f, broadcast ? 0xFFFF_FFFF_FFFF : Mac(dst));
            WriteMac(f[6..], Mac(src));
            BinaryPrimitives.WriteUInt16BigEndian(f[12..], 0x88B5);
            _frames[i] = frame;
            _ingress[i] = src % Ports;
            _destinations[i] = broadcast ? Enumerable.Range(0, Ports).Where(p => p != src % Ports).ToArray() : [dst % Ports];
        }
        // Group consecutive frames of one ingress port into batches, keeping the mix's order.
        var batches = new List<PacketBuffer[]>();
        var batchIngress = new List<int>();
        var current = new List<PacketBuffer>();
        for (var i = 0; i < frameCount; i++)
        {
            if (current.Count > 0 && (current.Count == 32 || batchIngress[^1] != _ingress[i]))
            {
                batches.Add([.. current]);
                current.Clear();
            }
            if (current.Count == 0) batchIngress.Add(_ingress[i]);
            var buffer = PacketBuffer.Wrap(_frames[i], PacketBuffer.Headroom, frameLength);
            current.Add(buffer);
        }
        batches.Add([.. current]);
        _batches = [.. batches];
        _batchIngress = [.. batchIngress];
        // Learn every MAC once so the measured loop forwards known unicast (and the 1 % broadcast).
        for (var m = 0; m < Macs; m++)
        {
            var frame = new byte[PacketBuffer.Headroom + frameLength];
            var f = frame.AsSpan(PacketBuffer.Headroom);
            WriteMac(f, 0xFFFF_FFFF_FFFF);
            WriteMac(f[6..], Mac(m));
            _ports[m % Ports].Inject(frame, frameLength);
        }
    }

    public Bridge Bridge { get; }
    public int FrameCount => _frames.Length;
    public long Delivered => _ports.Sum(p => p.Count);

    /// <summary>Forwards every frame of the mix once through the bridge, in per-port batches of up to 32 as a draining port hands them over.</summary>
    public void ForwardAll()
    {
        var batches = _batches;
        for (var b = 0; b < batches.Length; b++) _ports[_batchIngress[b]].Inject(batches[b]);
    }

    /// <summary>The same, one frame per call (no batching).</summary>
    public void ForwardAllSingly()
    {
        var frames = _frames;
        for (var i = 0; i < frames.Length; i++)
        {
            var frame = frames[i];
            _ports[_ingress[i]].Inject(frame, frame.Length - PacketBuffer.Headroom);
        }
    }

    /// <summary>The baseline: the same frames copied to the same destinations, nothing decided.</summary>
    public void CopyAll()
    {
        var frames = _frames;
        for (var i = 0; i < frames.Length; i++)
        {
            var frame = frames[i].AsSpan(PacketBuffer.Headroom);
            foreach (var d in _destinations[i]) frame.CopyTo(_copyTargets[d]);
        }
    }

    private static ulong Mac(int n) => 0x0200_0000_0000UL | (uint)(n + 1);

    private static void WriteMac(Span<byte> to, ulong mac)
    {
        BinaryPrimitives.WriteUInt32BigEndian(to, (uint)(mac >> 16));
        BinaryPrimitives.WriteUInt16BigEndian(to[4..], (ushort)mac);
    }

    private sealed class SinkPort(string name) : SwitchPort(name)
    {
        private readonly byte[] _target = new byte[2048];
        public long Count;

        public override string Kind => "bench";

        public void Inject(PacketBuffer[] batch) => Deliver(batch);

        public void Inject(byte[] buffer, int length)
        {
            var metadata = FrameMetadata.Plain(length);
            Deliver(buffer, PacketBuffer.Headroom, ref metadata);
        }

        protected override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
        {
            frame.CopyTo(_target);
            Count++;
            return DropReason.None;
        }
    }
}
