using System.Net.Sockets;
using System.Text;
using Xunit;

namespace XenIo.Integration.Tests.Netback;

/// <summary>netback's API as a test reads it: one GET over the Unix socket, expecting 200.</summary>
internal static class NetbackHttp
{
    /// <summary>The body of GET <paramref name="path"/> (the JSON replies carry Content-Length, so it needs no chunk decoding).</summary>
    public static async Task<string> GetAsync(string socket, string path)
    {
        using var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await s.ConnectAsync(new UnixDomainSocketEndPoint(socket));
        await s.SendAsync(Encoding.ASCII.GetBytes($"GET {path} HTTP/1.1\r\nHost: netback\r\nConnection: close\r\n\r\n"));
        var all = new MemoryStream();
        var buffer = new byte[8192];
        int n;
        while ((n = await s.ReceiveAsync(buffer)) > 0) all.Write(buffer, 0, n);
        var text = Encoding.UTF8.GetString(all.ToArray());
        Assert.StartsWith("HTTP/1.1 200", text);
        return text[(text.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4)..];
    }
}
