using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace XenIo.Consoled.Access;

/// <summary>
/// Finds which local user owns the client end of a loopback TCP connection, from the kernel's socket
/// table (<c>/proc/net/tcp</c>, <c>/proc/net/tcp6</c>): the client's socket is the row whose local
/// address is our peer and whose remote address is us. A client in another network namespace (or not
/// local at all) has no row, so it is unknown and must give a token.
/// </summary>
public static class TcpSocketOwner
{
    public static uint? Find(IPEndPoint client, IPEndPoint server, string procNet = "/proc/net")
    {
        client = Normalize(client);
        server = Normalize(server);
        // An IPv4 client may still sit on a dual-stack IPv6 socket (::ffff:127.0.0.1), listed in tcp6.
        string[] files = client.AddressFamily == AddressFamily.InterNetworkV6 ? ["tcp6"] : ["tcp", "tcp6"];
        foreach (var file in files)
        {
            try
            {
                foreach (var line in File.ReadLines(Path.Combine(procNet, file)))
                {
                    if (TryParseRow(line, out var local, out var remote, out uint uid) && local.Equals(client) && remote.Equals(server))
                        return uid;
                }
            }
            catch (IOException)
            {
            }
        }
        return null;
    }

    private static IPEndPoint Normalize(IPEndPoint ep) =>
        ep.Address.IsIPv4MappedToIPv6 ? new IPEndPoint(ep.Address.MapToIPv4(), ep.Port) : ep;

    /// <summary>
    /// Parses one row: <c>sl local_address rem_address st tx:rx tr:when retrnsmt uid …</c>; addresses are
    /// the kernel's 32-bit words in host byte order, ports big-endian hex.
    /// </summary>
    public static bool TryParseRow(string line, out IPEndPoint local, out IPEndPoint remote, out uint uid)
    {
        local = remote = null!;
        uid = 0;
        Span<Range> fields = stackalloc Range[10];
        var span = line.AsSpan().Trim();
        int n = span.SplitAny(fields, " \t", StringSplitOptions.RemoveEmptyEntries);
        if (n < 8 || !span[fields[0]].EndsWith(":")) return false;
        if (!TryParseEndPoint(span[fields[1]], out local) || !TryParseEndPoint(span[fields[2]], out remote)) return false;
        return uint.TryParse(span[fields[7]], NumberStyles.None, CultureInfo.InvariantCulture, out uid);
    }

    private static bool TryParseEndPoint(ReadOnlySpan<char> text, out IPEndPoint endPoint)
    {
        endPoint = null!;
        int colon = text.IndexOf(':');
        if (colon < 0) return false;
        var hex = text[..colon];
        if (!ushort.TryParse(text[(colon + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out ushort port)) return false;
        if (hex.Length != 8 && hex.Length != 32) return false;
        Span<byte> bytes = stackalloc byte[hex.Length / 2];
        for (int word = 0; word < hex.Length / 8; word++)
        {
            if (!uint.TryParse(hex.Slice(word * 8, 8), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out uint value)) return false;
            // Each word was printed from the kernel's memory as a host-order integer.
            if (!BitConverter.IsLittleEndian) value = System.Buffers.Binary.BinaryPrimitives.ReverseEndianness(value);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bytes[(word * 4)..], value);
        }
        var address = new IPAddress(bytes);
        if (address.IsIPv4MappedToIPv6) address = address.MapToIPv4();
        endPoint = new IPEndPoint(address, port);
        return true;
    }
}
