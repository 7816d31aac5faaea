using System.Buffers.Binary;

namespace XenIo.VSwitch.Capture;

/// <summary>
/// Opens a persistent mirror's capture file so that a netback restart continues it instead of
/// truncating it: records captured before the restart stay. A missing or empty file is started afresh.
/// A pcap file is continued when its header is the one this mirror would write (nanosecond magic,
/// Ethernet, the same snaplen); a pcapng file gets a new section appended (a Section Header Block, then
/// interface blocks as ports show up), which readers take as one capture. A record cut short by a crash
/// mid-write is trimmed off first, so the file stays readable to its end. A file holding anything else
/// is left alone and refused with the reason, rather than overwritten.
/// </summary>
public static class CaptureFile
{
    /// <summary>
    /// The stream a mirror writes to, positioned at the end of what the file already holds.
    /// <paramref name="continuesPcap"/> is true when a pcap file's header is already there (the writer
    /// must not write another).
    /// </summary>
    public static FileStream OpenResuming(string path, bool pcapNg, int snaplen, out bool continuesPcap)
    {
        // A large buffer: continuing a long capture walks its record headers once, a few bytes at a time.
        var stream = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read, bufferSize: 1 << 16);
        try
        {
            continuesPcap = false;
            if (stream.Length == 0) return stream;
            var end = pcapNg ? EndOfPcapNg(stream, path) : EndOfPcap(stream, path, snaplen);
            stream.SetLength(end);
            stream.Seek(end, SeekOrigin.Begin);
            continuesPcap = !pcapNg;
            return stream;
        }
        catch
        {
            stream.Dispose();
            throw;
        }
    }

    /// <summary>Where the last whole pcap record ends, after checking the file header is this mirror's.</summary>
    private static long EndOfPcap(FileStream stream, string path, int snaplen)
    {
        Span<byte> header = stackalloc byte[24];
        if (!ReadAt(stream, 0, header)
            || BinaryPrimitives.ReadUInt32LittleEndian(header) != PcapWriter.MagicNanoseconds
            || BinaryPrimitives.ReadInt32LittleEndian(header[16..]) != snaplen
            || BinaryPrimitives.ReadInt32LittleEndian(header[20..]) != PcapWriter.LinkTypeEthernet)
            throw new IOException($"{path} holds something other than this mirror's pcap (nanosecond pcap, Ethernet, snaplen {snaplen}); move it away, or del-mirror and add-mirror to start a new capture");
        Span<byte> record = stackalloc byte[16];
        long offset = 24;
        var length = stream.Length;
        while (ReadAt(stream, offset, record))
        {
            var captured = BinaryPrimitives.ReadUInt32LittleEndian(record[8..]);
            if (captured > (uint)snaplen || offset + 16 + captured > length) break;
            offset += 16 + captured;
        }
        return offset;
    }

    /// <summary>Where the last whole pcapng block ends, after checking the file starts as pcapng written little-endian.</summary>
    private static long EndOfPcapNg(FileStream stream, string path)
    {
        Span<byte> head = stackalloc byte[12];
        if (!ReadAt(stream, 0, head)
            || BinaryPrimitives.ReadUInt32LittleEndian(head) != PcapNgWriter.SectionHeaderType
            || BinaryPrimitives.ReadUInt32LittleEndian(head[8..]) != PcapNgWriter.ByteOrderMagic)
            throw new IOException($"{path} holds something other than little-endian pcapng; move it away, or del-mirror and add-mirror to start a new capture");
        Span<byte> trailer = stackalloc byte[4];
        long offset = 0;
        var length = stream.Length;
        while (ReadAt(stream, offset, head[..8]))
        {
            var total = BinaryPrimitives.ReadUInt32LittleEndian(head[4..]);
            if (total < 12 || total % 4 != 0 || offset + total > length
                || !ReadAt(stream, offset + total - 4, trailer) || BinaryPrimitives.ReadUInt32LittleEndian(trailer) != total)
                break;
            offset += total;
        }
        return offset;
    }

    /// <summary>Reads exactly <paramref name="into"/>.Length bytes at <paramref name="offset"/>; false when the file ends first.</summary>
    private static bool ReadAt(FileStream stream, long offset, Span<byte> into)
    {
        if (offset + into.Length > stream.Length) return false;
        stream.Seek(offset, SeekOrigin.Begin);
        stream.ReadExactly(into);
        return true;
    }
}
