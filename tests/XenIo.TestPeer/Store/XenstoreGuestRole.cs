using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.TestPeer.Store;

internal static class XenstoreGuestRole
{
    /// <summary>
    /// A guest in another process talking to xenstored only over its shared ring page:
    /// args = page file, this end's doorbell path, the daemon's doorbell path, another domain's node.
    /// </summary>
    [PeerRole("xenstore-guest")]
    public static int Run(string[] args)
    {
        using var page = new SharedPage(args[0]);
        using var doorbell = new DatagramDoorbell(args[1], args[2]);
        var client = XenstoreClient.OverRing(page.Memory, doorbell);
        try
        {
            Console.WriteLine("ready");
            for (var i = 0; i < 200; i++) client.WriteAsync($"data/k{i % 10}", $"value-{i}").GetAwaiter().GetResult();
            var mine = client.ReadAsync("data/k9").GetAwaiter().GetResult();
            if (mine != "value-199") { Console.Error.WriteLine($"read back '{mine}'"); return 1; }
            try
            {
                client.ReadAsync(args[3]).GetAwaiter().GetResult();
                Console.Error.WriteLine("read another domain's node");
                return 1;
            }
            catch (XenstoreException e) when (e.Error == XsError.EACCES) { }
            Console.WriteLine("ok " + client.GetDomainPathAsync(0).GetAwaiter().GetResult());
            return 0;
        }
        finally
        {
            client.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }
}
