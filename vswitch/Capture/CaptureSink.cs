using XenIo.VSwitch.Core;

namespace XenIo.VSwitch.Capture;

/// <summary>Where a mirror writes what it captures: a pcap or pcapng stream (a file, or netback's API stream).</summary>
public interface ICaptureSink : IDisposable
{
    /// <summary>Records one frame crossing <paramref name="port"/>; <paramref name="frame"/> is already cut at the snaplen.</summary>
    void Write(SwitchPort port, CaptureDirection direction, long unixNanoseconds, ReadOnlySpan<byte> frame, int originalLength);

    void Flush();
}

/// <summary>A pcap sink: one interface for everything (the format has no per-packet interface or direction).</summary>
public sealed class PcapSink(Stream stream, int snaplen = PcapWriter.DefaultSnaplen, bool nanoseconds = true, bool ownsStream = true, bool continues = false) : ICaptureSink
{
    private readonly PcapWriter _writer = new(stream, snaplen, nanoseconds, continues);
    private readonly Lock _gate = new();

    public long Records => _writer.Records;

    public void Write(SwitchPort port, CaptureDirection direction, long unixNanoseconds, ReadOnlySpan<byte> frame, int originalLength)
    {
        lock (_gate) _writer.Write(unixNanoseconds, frame, originalLength);
    }

    public void Flush()
    {
        lock (_gate) _writer.Flush();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _writer.Flush();
            if (ownsStream) stream.Dispose();
        }
    }
}

/// <summary>A pcapng sink: one interface block per port, named bridge/port, written the first time the port shows up.</summary>
public sealed class PcapNgSink(Stream stream, int snaplen = PcapWriter.DefaultSnaplen, bool ownsStream = true) : ICaptureSink
{
    private readonly PcapNgWriter _writer = new(stream, snaplen);
    private readonly Dictionary<SwitchPort, int> _interfaces = [];
    private readonly Lock _gate = new();

    public long Records => _writer.Records;

    public void Write(SwitchPort port, CaptureDirection direction, long unixNanoseconds, ReadOnlySpan<byte> frame, int originalLength)
    {
        lock (_gate)
        {
            if (!_interfaces.TryGetValue(port, out var id))
            {
                id = _writer.AddInterface(port.Bridge is { } b ? $"{b.Name}/{port.Name}" : port.Name);
                _interfaces[port] = id;
            }
            var flags = direction == CaptureDirection.Ingress ? PcapNgWriter.FlagInbound : PcapNgWriter.FlagOutbound;
            _writer.Write(id, unixNanoseconds, frame, originalLength, flags);
        }
    }

    public void Flush()
    {
        lock (_gate) _writer.Flush();
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _writer.Flush();
            if (ownsStream) stream.Dispose();
        }
    }
}
