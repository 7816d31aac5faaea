using System.Globalization;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Rings;

namespace XenIo.TestPeer.Rings;

/// <summary>Peer roles for the ring tests and the ring benchmark.</summary>
public static class RingRoles
{
    /// <summary>
    /// The backend of a netif tx ring in its own process: <c>ring-netif-tx-back FILE LENGTH START COUNT MY_SOCKET FRONT_SOCKET</c>.
    /// Prints <c>ready</c> once its socket is bound, then one result line:
    /// <c>done=N mismatches=M notifies=K received=R waits=W error=E</c>. Exit code 0 only if every request matched.
    /// </summary>
    [PeerRole("ring-netif-tx-back")]
    public static int NetifTxBack(string[] args)
    {
        if (args.Length != 6)
        {
            Console.Error.WriteLine("usage: ring-netif-tx-back FILE LENGTH START COUNT MY_SOCKET FRONT_SOCKET");
            return 2;
        }
        int length = int.Parse(args[1], CultureInfo.InvariantCulture);
        uint start = uint.Parse(args[2], CultureInfo.InvariantCulture);
        ulong count = ulong.Parse(args[3], CultureInfo.InvariantCulture);

        using var file = SharedRingFile.Open(args[0], length);
        using var notifier = DatagramRingNotifier.Bind(args[4]);
        notifier.Connect(args[5]);
        var ring = BackRing<NetifTxRequest, NetifTxResponse>.Attach(file.Address, length, start);
        Console.Out.WriteLine("ready");
        Console.Out.Flush();

        var r = NetifTxExchange.RunBack(ref ring, notifier, count);
        Console.Out.WriteLine(FormattableString.Invariant(
            $"done={r.Done} mismatches={r.Mismatches} notifies={r.Notifies} received={notifier.Received} waits={notifier.Waits} error={r.Error}"));
        if (r.Failure is not null) Console.Error.WriteLine(r.Failure);
        Console.Out.Flush();
        return r.Ok && r.Done == count ? 0 : 1;
    }
}
