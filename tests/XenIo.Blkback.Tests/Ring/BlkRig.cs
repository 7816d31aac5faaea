using System.Diagnostics;
using System.Text;
using XenIo.Guest.Blkfront.Ring;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains;
using XenIo.Hypervisor.Domains.Hyperd;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;
using XenIo.Hypervisor.Store.Transports;

namespace XenIo.Blkback.Tests.Ring;

/// <summary>
/// A toolstack without agents for block tests: the hypervisor core (hypercall.sock), xenstored and
/// hyperd's DomainManager in this process, which create domains with libxl's vbd nodes; blkback as its
/// own OS process (<c>dotnet xenio.dll blkback --run-dir …</c>) so it can be SIGKILLed; and the guests'
/// memory and hypercall connection taken here (an agent-less domain), where blkfront runs.
/// </summary>
public sealed class BlkRig : IAsyncDisposable
{
    public const int Xvda = 51712;

    private readonly CoreHost _host;
    private readonly Xenstored _daemon;
    private readonly XenstoreSocketListener _listener;
    private readonly List<GuestDomain> _guests = [];
    private readonly List<BlkfrontDevice> _fronts = [];
    private readonly StringBuilder _blkbackLog = new();
    private Process? _blkback;

    private BlkRig(string dir, CoreHost host, Xenstored daemon, XenstoreSocketListener listener)
    {
        Directory = dir;
        _host = host;
        _daemon = daemon;
        _listener = listener;
    }

    public string Directory { get; }
    public XenstoreClient Dom0 { get; private set; } = null!;
    public DomainManager Manager { get; private set; } = null!;
    public Process? Blkback => _blkback;

    public string BlkbackLog { get { lock (_blkbackLog) return _blkbackLog.ToString(); } }

    public static async Task<BlkRig> StartAsync(long budgetMiB = 512)
    {
        var dir = Path.Combine(Path.GetTempPath(), "xenio-blk-" + Guid.NewGuid().ToString("N")[..10]);
        System.IO.Directory.CreateDirectory(dir);
        var host = new CoreHost(dir, budgetMiB * 256);
        var daemon = new Xenstored(mapper: new XenstoreDomainMapper(host));
        var listener = new XenstoreSocketListener(daemon, XenstoreSocketListener.PathUnder(dir));
        var rig = new BlkRig(dir, host, daemon, listener);
        rig.Dom0 = await XenstoreClient.ConnectAsync(listener.SocketPath);
        rig.Manager = new DomainManager(host, rig.Dom0, spawner: null);
        return rig;
    }

    /// <summary>A sparse raw image of <paramref name="mib"/> MiB in the rig's directory.</summary>
    public string CreateImage(string name, long mib)
    {
        var path = Path.Combine(Directory, name);
        using var f = new FileStream(path, FileMode.Create);
        f.SetLength(mib << 20);
        return path;
    }

    public Task<DomainRecord> CreateDomainAsync(string name, long memoryMiB, params DiskConfig[] disks) =>
        Manager.CreateAsync(new DomainConfig { Name = name, MemoryMiB = memoryMiB, Vcpus = 1, Disks = [.. disks] });

    public static DiskConfig Disk(string image, int virtualDevice = Xvda, bool readOnly = false, bool cdrom = false, DiskFormat format = DiskFormat.Raw) =>
        new() { Target = image, Vdev = "xvda", VirtualDevice = virtualDevice, ReadOnly = readOnly, Cdrom = cdrom, Format = format };

    /// <summary>Takes the domain's memory and hypercall connection as its own process would.</summary>
    public GuestDomain AttachGuest(DomainRecord d)
    {
        var memory = d.Hosted.Memory.Duplicate();
        var hypercall = d.Hosted.TakeGuestEnd();
        int memFd = (int)memory.DangerousGetHandle(), hcFd = (int)hypercall.DangerousGetHandle();
        memory.SetHandleAsInvalid();
        hypercall.SetHandleAsInvalid();
        var guest = GuestDomain.Attach(memFd, hcFd);
        _guests.Add(guest);
        return guest;
    }

    public static string FrontendPath(ushort domid, int vdev = Xvda) => $"/local/domain/{domid}/device/vbd/{vdev}";
    public static string BackendPath(ushort domid, int vdev = Xvda) => $"/local/domain/0/backend/vbd/{domid}/{vdev}";

    /// <summary>Connects blkfront for the domain's disk (the frontend uses dom0's connection to write its keys).</summary>
    public async Task<BlkfrontDevice> ConnectAsync(GuestDomain guest, int vdev = Xvda, BlkfrontOptions? options = null)
    {
        var front = await BlkfrontDevice.ConnectAsync(guest, Dom0, FrontendPath(guest.Domid, vdev), BackendPath(guest.Domid, vdev), 0,
            options, m => Log($"blkfront: {m}"));
        _fronts.Add(front);
        return front;
    }

    /// <summary>Starts <c>xenio blkback</c> for this rig and waits for its status socket.</summary>
    /// <param name="ioWorkersPerQueue">blkback's I/O workers per ring (its own default when null).</param>
    public async Task StartBlkbackAsync(bool direct = false, int sectorSize = 512, int? ioWorkersPerQueue = null)
    {
        var status = Path.Combine(Directory, "blkback.sock");
        File.Delete(status);
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "xenio.dll"));
        foreach (var a in new[] { "blkback", "--run-dir", Directory }) psi.ArgumentList.Add(a);
        if (direct) psi.ArgumentList.Add("--direct");
        if (sectorSize != 512) { psi.ArgumentList.Add("--sector-size"); psi.ArgumentList.Add(sectorSize.ToString(System.Globalization.CultureInfo.InvariantCulture)); }
        psi.Environment["Logging__Console__FormatterName"] = "simple";
        if (ioWorkersPerQueue is { } workers) psi.Environment["Blkback__IoWorkersPerQueue"] = workers.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var p = Process.Start(psi)!;
        p.OutputDataReceived += (_, e) => { if (e.Data is not null) Log(e.Data); };
        p.ErrorDataReceived += (_, e) => { if (e.Data is not null) Log(e.Data); };
        p.BeginOutputReadLine();
        p.BeginErrorReadLine();
        _blkback = p;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (!File.Exists(status))
        {
            if (p.HasExited) throw new InvalidOperationException($"blkback exited ({p.ExitCode}):\n{BlkbackLog}");
            if (DateTime.UtcNow > deadline) throw new TimeoutException($"blkback did not start:\n{BlkbackLog}");
            await Task.Delay(50);
        }
    }

    /// <summary>blkback's status socket: one line per vbd ("domid/devid State image served=N errors=N").</summary>
    public async Task<string[]> StatusAsync()
    {
        using var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.Unix, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Unspecified);
        await socket.ConnectAsync(new System.Net.Sockets.UnixDomainSocketEndPoint(Path.Combine(Directory, "blkback.sock")));
        using var stream = new System.Net.Sockets.NetworkStream(socket);
        using var reader = new StreamReader(stream);
        return (await reader.ReadToEndAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
    }

    /// <summary>SIGKILL: no clean-up of any kind, as a crash.</summary>
    public void KillBlkback()
    {
        if (_blkback is null) return;
        _blkback.Kill();
        _blkback.WaitForExit();
        _blkback.Dispose();
        _blkback = null;
    }

    public void Log(string line)
    {
        lock (_blkbackLog) _blkbackLog.AppendLine(line);
    }

    /// <summary>Waits until the backend's state is <paramref name="state"/>; returns false after the timeout.</summary>
    public async Task<bool> WaitBackendStateAsync(ushort domid, XenbusState state, int vdev = Xvda, int seconds = 30)
    {
        var deadline = DateTime.UtcNow.AddSeconds(seconds);
        while (DateTime.UtcNow < deadline)
        {
            if (await Dom0.TryReadAsync($"{BackendPath(domid, vdev)}/state") == ((int)state).ToString()) return true;
            await Task.Delay(50);
        }
        return false;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var f in _fronts) await f.DisposeAsync();
        KillBlkback();
        foreach (var g in _guests) g.Dispose();
        await Manager.DisposeAsync();
        await Dom0.DisposeAsync();
        await _listener.DisposeAsync();
        _host.Dispose();
        try { System.IO.Directory.Delete(Directory, recursive: true); } catch (IOException) { }
    }
}

/// <summary>Reads an image behind blkback's back: .NET's FileStream would take an flock and collide with blkback's.</summary>
public static partial class RawFile
{
    public static unsafe byte[] Read(string path, long offset, int length)
    {
        int fd = open(path, 0);
        if (fd < 0) throw new IOException($"open {path} failed");
        try
        {
            var data = new byte[length];
            fixed (byte* p = data)
                if (pread(fd, p, (nuint)length, offset) != length) throw new IOException($"short read of {path}");
            return data;
        }
        finally { close(fd); }
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "open", StringMarshalling = System.Runtime.InteropServices.StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "pread")]
    private static unsafe partial nint pread(int fd, byte* buf, nuint count, long offset);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "close")]
    private static partial int close(int fd);
}
