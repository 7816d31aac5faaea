using System.Threading.Channels;
using XenIo.Net.Frames;
using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Ports;

/// <summary>
/// One end of a patch cable between two bridges (Open vSwitch's patch ports). A frame sent out of one
/// end is copied once into a pooled buffer and queued for the other end, which hands it to its bridge
/// from its own task: the two bridges' locks are never held together, so patching both ways cannot
/// deadlock. Offload metadata crosses unchanged (a GSO frame stays one frame).
/// </summary>
public sealed class PatchPort : SwitchPort
{
    private const int BatchSize = 32;
    private readonly PacketBufferPool _small = new(2048, 1024);
    private readonly PacketBufferPool _large = new(EtherTypes.MaxFrameLength, 16);
    private readonly Channel<PacketBuffer> _inbound = Channel.CreateBounded<PacketBuffer>(new BoundedChannelOptions(1024) { SingleReader = true });
    private Task? _pump;

    private PatchPort(string name) : base(name)
    {
    }

    public PatchPort Peer { get; private set; } = null!;
    public override string Kind => "patch";
    public override bool AcceptsGso => true;
    public override bool AcceptsPartialChecksum => true;

    /// <summary>Creates both ends; add each to its bridge.</summary>
    public static (PatchPort A, PatchPort B) CreatePair(string nameA, string nameB)
    {
        var a = new PatchPort(nameA);
        var b = new PatchPort(nameB);
        a.Peer = b;
        b.Peer = a;
        return (a, b);
    }

    protected internal override void OnAttached() => _pump = Task.Run(Pump);

    protected internal override void OnDetached()
    {
        // The pump hands what is queued to no bridge (Deliver drops it) and ends (see Pump).
        _inbound.Writer.TryComplete();
        try
        {
            _pump?.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
        while (_inbound.Reader.TryRead(out var stale)) stale.Return();
    }

    protected internal override DropReason Transmit(ReadOnlySpan<byte> frame, in FrameMetadata metadata)
    {
        var peer = Peer;
        if (peer.Bridge is null) return DropReason.LinkDown;
        var buffer = (frame.Length <= peer._small.BufferCapacity ? peer._small.Rent() : null) ?? peer._large.Rent();
        if (buffer is null) return DropReason.NoBuffer;
        // A GSO frame of the largest size with a tag pushed is more than the largest buffer holds.
        if (!buffer.TrySet(frame, metadata))
        {
            buffer.Return();
            return DropReason.TooBig;
        }
        if (peer._inbound.Writer.TryWrite(buffer)) return DropReason.None;
        buffer.Return();
        return DropReason.QueueFull;
    }

    private async Task Pump()
    {
        var batch = new PacketBuffer[BatchSize];
        var reader = _inbound.Reader;
        // No token: waiting with a cancellable one makes the channel allocate a waiter each time the
        // queue runs dry, about once a frame at ordinary rates. Detaching completes the queue instead.
        while (await reader.WaitToReadAsync(CancellationToken.None).ConfigureAwait(false))
        {
            var count = 0;
            while (count < BatchSize && reader.TryRead(out var buffer)) batch[count++] = buffer;
            try
            {
                Deliver(batch.AsSpan(0, count));
            }
            finally
            {
                for (var i = 0; i < count; i++)
                {
                    batch[i].Return();
                    batch[i] = null!;
                }
            }
        }
    }

    public override void Dispose()
    {
        base.Dispose();
        _inbound.Writer.TryComplete();
    }
}
