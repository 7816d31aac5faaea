using System.Diagnostics;
using System.Text;
using XenIo.Guest.Blkfront.Ring;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Bench.Blk;

/// <summary>
/// One guest disk for the block benchmarks: the hypervisor core, xenstored and hyperd's DomainManager in
/// this process, a domain with one vbd on <c>image</c>, the blkback daemon in its own process
/// (<c>xenio blkback --direct</c>) and a connected <see cref="BlkfrontDevice"/> on the domain's memory.
/// </summary>
internal sealed class BlkRingRig : IAsyncDisposable
{
    private CoreHost? _host;
    private XenstoreSocketListener? _listener;
    private XenstoreClient? _dom0;
    private DomainManager? _manager;
    private GuestDomain? _guest;
    private Process? _blkback;
    private readonly StringBuilder _log = new();

    public BlkfrontDevice Front { get; private set; } = null!;

    public string Log { get { lock (_log) return _log.ToString(); } }

    public static async Task<BlkRingRig> StartAsync(string dir, string image, CancellationToken ct)
    {
        var rig = new BlkRingRig();
        try
        {
            rig._host = new CoreHost(dir, 512L * 256);
            var daemon = new Xenstored(mapper: new XenstoreDomainMapper(rig._host));
            rig._listener = new XenstoreSocketListener(daemon, XenstoreSocketListener.PathUnder(dir));
            rig._dom0 = await XenstoreClient.ConnectAsync(rig._listener.SocketPath, ct);
            // 64 grant frames: room for a ring's worth of 1 MiB requests (256 segments) kept granted within blkfront's half-the-table budget.
            rig._manager = new DomainManager(rig._host, rig._dom0, spawner: null, new DomainManagerOptions { GrantFrames = 64 });
            var d = await rig._manager.CreateAsync(new DomainConfig
            {
                Name = "bench", MemoryMiB = 128, Vcpus = 1,
                Disks = [new DiskConfig { Target = image, Vdev = "xvda", VirtualDevice = 51712 }],
            }, ct);
            var memory = d.Hosted.Memory.Duplicate();
            var hypercall = d.Hosted.TakeGuestEnd();
            int memFd = (int)memory.DangerousGetHandle(), hcFd = (int)hypercall.DangerousGetHandle();
            memory.SetHandleAsInvalid();
            hypercall.SetHandleAsInvalid();
            rig._guest = GuestDomain.Attach(memFd, hcFd);

            var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
            foreach (var a in new[] { "blkback", "--run-dir", dir, "--direct" }) psi.ArgumentList.Add(a);
            rig._blkback = Process.Start(psi)!;
            rig._blkback.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (rig._log) rig._log.AppendLine(e.Data); };
            rig._blkback.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (rig._log) rig._log.AppendLine(e.Data); };
            rig._blkback.BeginOutputReadLine();
            rig._blkback.BeginErrorReadLine();
            var status = Path.Combine(dir, "blkback.sock");
            var deadline = DateTime.UtcNow.AddSeconds(60);
            while (!File.Exists(status) && !rig._blkback.HasExited && DateTime.UtcNow < deadline) await Task.Delay(50, ct);
            if (!File.Exists(status)) throw new InvalidOperationException($"blkback did not start:\n{rig.Log}");
            rig.Front = await BlkfrontDevice.ConnectAsync(rig._guest, rig._dom0, $"/local/domain/{d.Domid}/device/vbd/51712",
                $"/local/domain/0/backend/vbd/{d.Domid}/51712", 0, new BlkfrontOptions { RingPageOrder = 0, Queues = 1 }, cancellationToken: ct);
            return rig;
        }
        catch
        {
            await rig.DisposeAsync();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Front is not null) await Front.DisposeAsync();
        if (_blkback is { HasExited: false })
        {
            _blkback.Kill();
            await _blkback.WaitForExitAsync(CancellationToken.None);
        }
        _blkback?.Dispose();
        _guest?.Dispose();
        if (_manager is not null) await _manager.DisposeAsync();
        if (_dom0 is not null) await _dom0.DisposeAsync();
        if (_listener is not null) await _listener.DisposeAsync();
        _host?.Dispose();
    }
}
