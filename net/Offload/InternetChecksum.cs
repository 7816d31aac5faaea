using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace XenIo.Net.Offload;

/// <summary>
/// The Internet checksum (RFC 1071): a ones' complement sum of 16-bit big-endian words. Summed here in
/// native order eight bytes at a time and byte-swapped once at the end (RFC 1071 §2(B): the sum is
/// byte-order independent), which is what makes completing a 64 KiB GSO frame cheap.
/// </summary>
public static class InternetChecksum
{
    /// <summary>Adds <paramref name="data"/> to a running native-order sum. Only the last piece may have an odd length.</summary>
    public static ulong Add(ulong sum, ReadOnlySpan<byte> data)
    {
        var words = MemoryMarshal.Cast<byte, ulong>(data);
        foreach (var w in words)
        {
            sum += w;
            if (sum < w) sum++;
        }
        var rest = data[(words.Length * 8)..];
        if (rest.Length >= 4)
        {
            sum = AddCarry(sum, MemoryMarshal.Read<uint>(rest));
            rest = rest[4..];
        }
        if (rest.Length >= 2)
        {
            sum = AddCarry(sum, MemoryMarshal.Read<ushort>(rest));
            rest = rest[2..];
        }
        if (rest.Length == 1)
        {
            // A trailing byte is the high half of a big-endian word padded with zero.
            sum = AddCarry(sum, BitConverter.IsLittleEndian ? rest[0] : (uint)rest[0] << 8);
        }
        return sum;
    }

    /// <summary>Adds a 16-bit value given in network (big-endian) meaning to a native-order sum.</summary>
    public static ulong AddWord(ulong sum, ushort networkValue) =>
        AddCarry(sum, BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(networkValue) : networkValue);

    /// <summary>Folds a native-order sum to 16 bits and returns it in network meaning (not complemented).</summary>
    public static ushort Fold(ulong sum)
    {
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFFFFFF) + (sum >> 32);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        sum = (sum & 0xFFFF) + (sum >> 16);
        var folded = (ushort)sum;
        return BitConverter.IsLittleEndian ? BinaryPrimitives.ReverseEndianness(folded) : folded;
    }

    /// <summary>The checksum of <paramref name="data"/> as it would be stored (complemented, network meaning).</summary>
    public static ushort Compute(ReadOnlySpan<byte> data) => (ushort)~Fold(Add(0, data));

    private static ulong AddCarry(ulong sum, ulong value)
    {
        sum += value;
        if (sum < value) sum++;
        return sum;
    }
}
