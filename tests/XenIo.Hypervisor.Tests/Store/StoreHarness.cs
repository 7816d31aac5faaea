using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Hypervisor.Tests.Store;

/// <summary>A daemon on a Unix socket in a temp run directory, plus helpers to attach guests over rings.</summary>
public sealed class StoreHarness : IAsyncDisposable
{
    private readonly InProcessDomainMapper _mapper = new();
    private readonly List<IAsyncDisposable> _owned = [];
    private ulong _nextGfn = 0x1000;

    public StoreHarness(XenstoreQuota? quota = null)
    {
        Directory = Path.Combine(Path.GetTempPath(), "xenio-store-" + Guid.NewGuid().ToString("N")[..12]);
        System.IO.Directory.CreateDirectory(Directory);
        Daemon = new Xenstored(quota, _mapper);
        Listener = new XenstoreSocketListener(Daemon, XenstoreSocketListener.PathUnder(Directory));
    }

    public string Directory { get; }
    public Xenstored Daemon { get; }
    public XenstoreSocketListener Listener { get; }
    public string SocketPath => Listener.SocketPath;

    public async Task<XenstoreClient> Dom0Async()
    {
        var c = await XenstoreClient.ConnectAsync(SocketPath);
        _owned.Add(c);
        return c;
    }

    /// <summary>Introduces <paramref name="domId"/> through XS_INTRODUCE and returns the guest's page and doorbell.</summary>
    public async Task<(byte[] Page, InMemoryDoorbell Doorbell)> IntroduceRingAsync(XenstoreClient dom0, ushort domId)
    {
        var page = new byte[4096];
        var (daemonEnd, guestEnd) = InMemoryDoorbell.CreatePair();
        var gfn = _nextGfn++;
        var port = (uint)domId + 10;
        _mapper.Offer(domId, gfn, port, new XenstoreDomainRing(page, daemonEnd));
        await dom0.IntroduceAsync(domId, gfn, port);
        return (page, guestEnd);
    }

    /// <summary>A guest client talking as <paramref name="domId"/> over its own ring.</summary>
    public async Task<XenstoreClient> GuestAsync(XenstoreClient dom0, ushort domId)
    {
        var (page, doorbell) = await IntroduceRingAsync(dom0, domId);
        var c = XenstoreClient.OverRing(page, doorbell);
        _owned.Add(c);
        return c;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var o in _owned) await o.DisposeAsync();
        await Listener.DisposeAsync();
        Daemon.Dispose();
        try { System.IO.Directory.Delete(Directory, true); } catch (IOException) { }
    }

    public static async Task<XsError> ErrorOf(Func<Task> action)
    {
        try
        {
            await action();
            return XsError.None;
        }
        catch (XenstoreException e)
        {
            return e.Error;
        }
    }

    public static byte[] Message(XsdSockmsgType type, uint reqId, uint txId, ReadOnlySpan<byte> payload)
    {
        var m = new byte[16 + payload.Length];
        XsdCodec.WriteHeader(m, type, reqId, txId, (uint)payload.Length);
        payload.CopyTo(m.AsSpan(16));
        return m;
    }
}
