using System.Buffers.Binary;

namespace XenIo.VSwitch.Capture;

/// <summary>
/// Writes the classic pcap format (24-byte file header, 16-byte record headers, LINKTYPE_ETHERNET) to a
/// stream, in microseconds (magic 0xA1B2C3D4) or nanoseconds (0xA1B23C4D) with values to match (the
/// mismatch that breaks Wireshark on other tools' files). Records keep the frame's original length and
/// are cut at the snaplen the header announces. Pure: no I/O beyond <see cref="Stream.Write(ReadOnlySpan{byte})"/>;
/// nothing is buffered here, so <see cref="Flush"/> reaches the file whenever the caller wants a live file readable.
/// </summary>
public sealed class PcapWriter
{
    public const uint MagicMicroseconds = 0xA1B2C3D4;
    public const uint MagicNanoseconds = 0xA1B23C4D;
    public const int LinkTypeEthernet = 1;
    public const int DefaultSnaplen = 262144;

    private readonly Stream _stream;
    private readonly byte[] _record = new byte[16];

    /// <param name="continues">The stream already holds this format's file header (a capture being continued): write records only.</param>
    public PcapWriter(Stream stream, int snaplen = DefaultSnaplen, bool nanoseconds = true, bool continues = false)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (snaplen <= 0) throw new ArgumentOutOfRangeException(nameof(snaplen));
        _stream = stream;
        Snaplen = snaplen;
        Nanoseconds = nanoseconds;
        if (continues) return;
        Span<byte> header = stackalloc byte[24];
        WriteFileHeader(header, snaplen, nanoseconds);
        _stream.Write(header);
    }

    public int Snaplen { get; }
    public bool Nanoseconds { get; }
    public long Records { get; private set; }

    public static void WriteFileHeader(Span<byte> header, int snaplen, bool nanoseconds)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(header, nanoseconds ? MagicNanoseconds : MagicMicroseconds);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], 4);
        BinaryPrimitives.WriteInt32LittleEndian(header[8..], 0);   // thiszone
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], 0); // sigfigs
        BinaryPrimitives.WriteInt32LittleEndian(header[16..], snaplen);
        BinaryPrimitives.WriteInt32LittleEndian(header[20..], LinkTypeEthernet);
    }

    /// <summary>Appends one record: <paramref name="frame"/> cut at the snaplen, <paramref name="originalLength"/> as it was on the wire.</summary>
    public void Write(long unixNanoseconds, ReadOnlySpan<byte> frame, int originalLength)
    {
        var captured = Math.Min(frame.Length, Snaplen);
        var seconds = (uint)(unixNanoseconds / 1_000_000_000);
        var fraction = (uint)(unixNanoseconds % 1_000_000_000);
        if (!Nanoseconds) fraction /= 1000;
        BinaryPrimitives.WriteUInt32LittleEndian(_record, seconds);
        BinaryPrimitives.WriteUInt32LittleEndian(_record.AsSpan(4), fraction);
        BinaryPrimitives.WriteInt32LittleEndian(_record.AsSpan(8), captured);
        BinaryPrimitives.WriteInt32LittleEndian(_record.AsSpan(12), Math.Max(originalLength, captured));
        _stream.Write(_record);
        _stream.Write(frame[..captured]);
        Records++;
    }

    public void Flush() => _stream.Flush();
}
