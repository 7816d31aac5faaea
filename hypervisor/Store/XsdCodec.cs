using System.Buffers.Binary;
using System.Buffers.Text;
using XenIo.Hypervisor.Abi;

namespace XenIo.Hypervisor.Store;

/// <summary>
/// The xenstore wire codec (io/xs_wire.h): a 16-byte little-endian <c>xsd_sockmsg</c> header and a
/// payload of at most XENSTORE_PAYLOAD_MAX bytes made of NUL-terminated strings. Pure: spans in, values out.
/// </summary>
public static class XsdCodec
{
    public const int HeaderSize = XsdSockmsg.Size;
    public const int MaxMessage = HeaderSize + XenstoreLimits.PayloadMax;

    public static XsdSockmsg ReadHeader(ReadOnlySpan<byte> src) => new()
    {
        Type = (XsdSockmsgType)BinaryPrimitives.ReadUInt32LittleEndian(src),
        ReqId = BinaryPrimitives.ReadUInt32LittleEndian(src[4..]),
        TxId = BinaryPrimitives.ReadUInt32LittleEndian(src[8..]),
        Len = BinaryPrimitives.ReadUInt32LittleEndian(src[12..]),
    };

    public static void WriteHeader(Span<byte> dest, XsdSockmsgType type, uint reqId, uint txId, uint len)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(dest, (uint)type);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[4..], reqId);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[8..], txId);
        BinaryPrimitives.WriteUInt32LittleEndian(dest[12..], len);
    }

    /// <summary>Number of NUL-terminated strings in <paramref name="payload"/> (xenstore_count_strings).</summary>
    public static int CountStrings(ReadOnlySpan<byte> payload)
    {
        var n = 0;
        foreach (var b in payload) if (b == 0) n++;
        return n;
    }

    /// <summary>
    /// The single argument of a one-argument request (xenstored's onearg): the payload must hold exactly
    /// one NUL, at its end. The returned span excludes the NUL.
    /// </summary>
    public static bool TryOneArg(ReadOnlySpan<byte> payload, out ReadOnlySpan<byte> arg)
    {
        arg = default;
        if (payload.Length == 0 || payload.IndexOf((byte)0) != payload.Length - 1) return false;
        arg = payload[..^1];
        return true;
    }

    /// <summary>Takes the next NUL-terminated string off <paramref name="rest"/>; false if no NUL is left.</summary>
    public static bool TryNextString(ref ReadOnlySpan<byte> rest, out ReadOnlySpan<byte> value)
    {
        var nul = rest.IndexOf((byte)0);
        if (nul < 0) { value = default; return false; }
        value = rest[..nul];
        rest = rest[(nul + 1)..];
        return true;
    }

    /// <summary>Parses a domain id as xenstored's parse_domid: decimal digits only, at most 65535.</summary>
    public static bool TryParseDomId(ReadOnlySpan<byte> text, out ushort domId)
    {
        domId = 0;
        if (text.Length == 0 || text.Length > 5) return false;
        foreach (var b in text) if (b is < (byte)'0' or > (byte)'9') return false;
        if (!Utf8Parser.TryParse(text, out uint v, out var used) || used != text.Length || v > ushort.MaxValue) return false;
        domId = (ushort)v;
        return true;
    }

    /// <summary>Parses an unsigned decimal (atoi-like but strict); false on junk.</summary>
    public static bool TryParseUInt(ReadOnlySpan<byte> text, out ulong value)
    {
        value = 0;
        if (text.Length == 0) return false;
        foreach (var b in text) if (b is < (byte)'0' or > (byte)'9') return false;
        return Utf8Parser.TryParse(text, out value, out var used) && used == text.Length;
    }
}

/// <summary>Builds a reply payload into a fixed buffer; remembers overflow instead of throwing (E2BIG).</summary>
public ref struct PayloadBuilder
{
    private readonly Span<byte> _dest;
    private int _length;
    private bool _overflow;

    public PayloadBuilder(Span<byte> dest) { _dest = dest; _length = 0; _overflow = false; }

    public readonly int Length => _length;
    public readonly bool Overflow => _overflow;

    public void Append(scoped ReadOnlySpan<byte> bytes)
    {
        if (_overflow || _length + bytes.Length > _dest.Length) { _overflow = true; return; }
        bytes.CopyTo(_dest[_length..]);
        _length += bytes.Length;
    }

    public void Append(scoped ReadOnlySpan<char> ascii)
    {
        if (_overflow || _length + ascii.Length > _dest.Length) { _overflow = true; return; }
        for (var i = 0; i < ascii.Length; i++) _dest[_length + i] = (byte)ascii[i];
        _length += ascii.Length;
    }

    public void Append(byte b)
    {
        if (_overflow || _length >= _dest.Length) { _overflow = true; return; }
        _dest[_length++] = b;
    }

    public void AppendDecimal(ulong value)
    {
        if (_overflow || !Utf8Formatter.TryFormat(value, _dest[_length..], out var n)) { _overflow = true; return; }
        _length += n;
    }
}
