using System.Globalization;
using Microsoft.Extensions.Logging;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Domains.Spawn;
using XenIo.Hypervisor.Domains.Toolstack;
using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Hypervisor.Domains.Hyperd;

/// <summary>
/// Devices on a running domain (libxl's <c>libxl_device_nic_add</c>/<c>_remove</c>, <c>libxl_device_disk_add</c>/<c>_remove</c>
/// and their listings), plus rename, sysrq and the host's figures (<c>xl rename</c>, <c>xl sysrq</c>, <c>xl info</c>).
/// </summary>
public sealed partial class DomainManager
{
    /// <summary>The bridge a vif joins when its spec names none (the embedded default).</summary>
    public const string DefaultBridge = "xenbr0";

    /// <summary>libxl's LIBXL_DESTROY_TIMEOUT: how long a detach waits for the backend to close.</summary>
    public static readonly TimeSpan DefaultDetachTimeout = TimeSpan.FromSeconds(10);

    /// <summary>Where netback publishes the switch's bridges (vswitch's SwitchConfigMapping.Root).</summary>
    public const string SwitchRoot = "/xenio/switch";

    /// <summary>A generated MAC no vif of any domain has.</summary>
    private string UniqueMac()
    {
        while (true)
        {
            var mac = GenerateMac();
            lock (_gate)
                if (!_domains.Values.Any(d => d.Vifs.Any(v => string.Equals(v.Mac, mac, StringComparison.OrdinalIgnoreCase))))
                    return mac;
        }
    }

    /// <summary>A MAC and an interface name belong to one vif of one domain; called under <c>_gate</c>.</summary>
    private void ValidateVifUnique(string? mac, string? vifname)
    {
        foreach (var d in _domains.Values)
            foreach (var v in d.Vifs)
            {
                if (mac is not null && string.Equals(v.Mac, mac, StringComparison.OrdinalIgnoreCase))
                    throw new DomainException(409, $"vif mac {mac} is in use by domain '{d.Name}' (vif {v.Devid})");
                if (vifname is not null && v.Vifname == vifname)
                    throw new DomainException(409, $"vifname {vifname} is in use by domain '{d.Name}' (vif {v.Devid})");
            }
    }

    /// <summary>
    /// The bridge must be one netback serves. While netback has published no switch (it is not running),
    /// hyperd cannot tell and accepts any name; the vif connects when the bridge appears.
    /// </summary>
    private async Task ValidateBridgeAsync(string bridge, CancellationToken cancellationToken)
    {
        string[] bridges;
        try { bridges = await dom0.DirectoryAsync(SwitchRoot, cancellationToken: cancellationToken).ConfigureAwait(false); }
        catch (XenstoreException e) when (e.Error == XsError.ENOENT) { return; }
        if (bridges.Length == 0 || bridges.Contains(bridge, StringComparer.Ordinal)) return;
        throw new DomainException(400, $"vif bridge '{bridge}': no such bridge; netback serves {string.Join(", ", bridges.Order(StringComparer.Ordinal))} (create one with `xenio switch add-br {bridge}`)");
    }

    /// <summary>A disk's image must exist and be openable as its mode asks; blkback serves raw images only.</summary>
    internal static void ValidateDisk(DiskConfig disk)
    {
        if (disk.Vdev is null || !Enum.IsDefined(disk.Format)) throw new DomainException(400, "disk: vdev must be given and format known");
        if (disk.Format != DiskFormat.Raw)
            throw new DomainException(400, $"disk {disk.Vdev}: format={disk.Format.ToString().ToLowerInvariant()} is not served (blkback serves raw images)");
        if (disk.Target is null)
        {
            if (!disk.Cdrom) throw new DomainException(400, $"disk {disk.Vdev}: no target (only an empty CD-ROM drive may have none)");
            return;
        }
        if (!Path.IsPathFullyQualified(disk.Target)) throw new DomainException(400, $"disk {disk.Vdev}: target '{disk.Target}' is not an absolute path");
        if (!File.Exists(disk.Target)) throw new DomainException(400, $"disk {disk.Vdev}: target {disk.Target} does not exist");
        bool readOnly = disk.ReadOnly || disk.Cdrom;
        if (Interop.Libc.FAccessAt(Interop.Libc.AT_FDCWD, disk.Target, readOnly ? Interop.Libc.R_OK : Interop.Libc.R_OK | Interop.Libc.W_OK, Interop.Libc.AT_EACCESS) != 0)
            throw new DomainException(400, $"disk {disk.Vdev}: cannot open {disk.Target} for {(readOnly ? "reading" : "reading and writing")}: {System.Runtime.InteropServices.Marshal.GetLastPInvokeErrorMessage()}");
    }

    private DomainRecord Live(string nameOrId)
    {
        var domain = Get(nameOrId);
        if (domain.State is not (DomainState.Running or DomainState.Paused))
            throw new DomainException(409, $"domain '{domain.Name}' is {domain.State.ToString().ToLowerInvariant()}");
        return domain;
    }

    /// <summary><c>xl network-attach</c>: writes the vif's nodes as libxl does; the frontend and backend take it from there.</summary>
    public async Task<DeviceInfo> AttachVifAsync(string nameOrId, VifConfig vif, CancellationToken cancellationToken = default)
    {
        ValidateVif(vif);
        await ValidateBridgeAsync(vif.Bridge, cancellationToken).ConfigureAwait(false);
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var domain = Live(nameOrId);
            string mac;
            string vifname;
            lock (_gate)
            {
                ValidateVifUnique(vif.Mac, vif.Vifname);
                var used = domain.Config.Vifs.Select(v => v.Devid).ToHashSet();
                // libxl takes the next devid after the highest in use.
                if (used.Contains(vif.Devid) || vif.Devid < 0) vif = vif with { Devid = used.Count == 0 ? 0 : used.Max() + 1 };
                vifname = vif.Vifname ?? $"vif{domain.Domid}.{vif.Devid}";
                if (vif.Vifname is null) ValidateVifUnique(null, vifname);
            }
            mac = vif.Mac ?? UniqueMac();
            await XenstoreLayoutWriter.ApplyAsync(dom0, XenstoreLayout.Vif(domain.Domid, vif, mac, vifname), cancellationToken).ConfigureAwait(false);
            lock (_gate)
            {
                domain.Vifs = [.. domain.Vifs, (vif.Devid, mac, vifname)];
                domain.Config = domain.Config with { Vifs = [.. domain.Config.Vifs, vif with { Mac = mac }] };
            }
            _log.LogInformation("domain {Name}: vif {Devid} ({Mac}) attached to {Bridge}", domain.Name, vif.Devid, mac, vif.Bridge);
            return await DeviceAsync(domain, "vif", vif.Devid, cancellationToken).ConfigureAwait(false);
        }
        finally { _lock.Release(); }
    }

    /// <summary><c>xl block-attach</c>.</summary>
    public async Task<DeviceInfo> AttachDiskAsync(string nameOrId, DiskConfig disk, CancellationToken cancellationToken = default)
    {
        ValidateDisk(disk);
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var domain = Live(nameOrId);
            lock (_gate)
                if (domain.Config.Disks.Any(d => d.VirtualDevice == disk.VirtualDevice))
                    throw new DomainException(409, $"domain '{domain.Name}' has a disk {disk.Vdev} already");
            await XenstoreLayoutWriter.ApplyAsync(dom0, XenstoreLayout.Vbd(domain.Domid, disk), cancellationToken).ConfigureAwait(false);
            lock (_gate) domain.Config = domain.Config with { Disks = [.. domain.Config.Disks, disk] };
            _log.LogInformation("domain {Name}: disk {Vdev} ({Target}) attached", domain.Name, disk.Vdev, disk.Target);
            return await DeviceAsync(domain, "vbd", disk.VirtualDevice, cancellationToken).ConfigureAwait(false);
        }
        finally { _lock.Release(); }
    }

    /// <summary>
    /// <c>xl network-detach</c> / <c>block-detach</c>, as libxl removes a device: the backend is told to go
    /// (<c>online=0</c>, <c>state=Closing</c>), hyperd waits for it to reach Closed (or its directory to
    /// vanish), then removes the frontend, backend and libxl nodes. When the backend does not close in
    /// <paramref name="timeout"/> the nodes are removed all the same (libxl's forced remove after its
    /// timeout); <paramref name="force"/> skips the wait. Returns whether the removal was forced.
    /// <paramref name="device"/> is a devid, or a vif's MAC, or a disk's vdev name.
    /// </summary>
    public async Task<bool> DetachAsync(string nameOrId, string kind, string device, bool force, TimeSpan? timeout = null,
        CancellationToken cancellationToken = default)
    {
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var domain = Get(nameOrId);
            int devid = ResolveDevice(domain, kind, device);
            var (_, be) = XenstoreLayout.Paths(kind, domain.Domid, devid);
            bool forced = force;
            if (!force && domain.State is DomainState.Running or DomainState.Paused)
            {
                await using var watch = await dom0.SubscribeAsync($"{be}/state", cancellationToken: cancellationToken).ConfigureAwait(false);
                await dom0.TransactAsync(async tx =>
                {
                    await dom0.WriteAsync($"{be}/online", "0", tx, cancellationToken).ConfigureAwait(false);
                    await dom0.WriteAsync($"{be}/state", ((int)XenbusState.Closing).ToString(CultureInfo.InvariantCulture), tx, cancellationToken).ConfigureAwait(false);
                }, cancellationToken: cancellationToken).ConfigureAwait(false);
                using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                deadline.CancelAfter(timeout ?? DefaultDetachTimeout);
                try
                {
                    while (true)
                    {
                        var state = await dom0.TryReadAsync($"{be}/state", cancellationToken: deadline.Token).ConfigureAwait(false);
                        if (state is null || state == ((int)XenbusState.Closed).ToString(CultureInfo.InvariantCulture)) break;
                        await watch.Events.ReadAsync(deadline.Token).ConfigureAwait(false);
                    }
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    _log.LogWarning("domain {Name}: {Kind} {Devid}: the backend did not close in {Seconds} s; removing its nodes anyway",
                        domain.Name, kind, devid, (timeout ?? DefaultDetachTimeout).TotalSeconds);
                    forced = true;
                }
            }
            await XenstoreLayoutWriter.ApplyAsync(dom0, XenstoreLayout.DeviceRemoval(kind, domain.Domid, devid), cancellationToken).ConfigureAwait(false);
            lock (_gate)
            {
                if (kind == "vif")
                {
                    domain.Vifs = [.. domain.Vifs.Where(v => v.Devid != devid)];
                    domain.Config = domain.Config with { Vifs = [.. domain.Config.Vifs.Where(v => v.Devid != devid)] };
                }
                else domain.Config = domain.Config with { Disks = [.. domain.Config.Disks.Where(d => d.VirtualDevice != devid)] };
            }
            _log.LogInformation("domain {Name}: {Kind} {Devid} detached{Forced}", domain.Name, kind, devid, forced ? " (forced)" : "");
            return forced;
        }
        finally { _lock.Release(); }
    }

    private static int ResolveDevice(DomainRecord domain, string kind, string device)
    {
        switch (kind)
        {
            case "vif":
                foreach (var v in domain.Vifs)
                    if (v.Devid.ToString(CultureInfo.InvariantCulture) == device || string.Equals(v.Mac, device, StringComparison.OrdinalIgnoreCase))
                        return v.Devid;
                throw new DomainException(404, $"domain '{domain.Name}' has no vif '{device}' (give its devid or MAC)");
            case "vbd":
                foreach (var d in domain.Config.Disks)
                    if (d.VirtualDevice.ToString(CultureInfo.InvariantCulture) == device || d.Vdev == device)
                        return d.VirtualDevice;
                throw new DomainException(404, $"domain '{domain.Name}' has no disk '{device}' (give its devid or vdev)");
            default:
                throw new DomainException(404, $"no device kind '{kind}' (vif or vbd)");
        }
    }

    /// <summary><c>xl network-list</c> / <c>block-list</c>: each device's state, event channel and ring refs as xenstore has them.</summary>
    public async Task<List<DeviceInfo>> ListDevicesAsync(string nameOrId, string kind, CancellationToken cancellationToken = default)
    {
        var domain = Get(nameOrId);
        IEnumerable<int> devids = kind switch
        {
            "vif" => domain.Vifs.Select(v => v.Devid),
            "vbd" => domain.Config.Disks.Select(d => d.VirtualDevice),
            _ => throw new DomainException(404, $"no device kind '{kind}' (vif or vbd)"),
        };
        var list = new List<DeviceInfo>();
        foreach (var devid in devids.Order().ToList())
            list.Add(await DeviceAsync(domain, kind, devid, cancellationToken).ConfigureAwait(false));
        return list;
    }

    private async Task<DeviceInfo> DeviceAsync(DomainRecord domain, string kind, int devid, CancellationToken cancellationToken)
    {
        var (fe, be) = XenstoreLayout.Paths(kind, domain.Domid, devid);
        async Task<int> Number(string path) =>
            int.TryParse(await dom0.TryReadAsync(path, cancellationToken: cancellationToken).ConfigureAwait(false), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : -1;
        var info = new DeviceInfo
        {
            Kind = kind,
            Devid = devid,
            BackendId = DomainIds.Dom0,
            FrontendId = domain.Domid,
            State = await Number($"{fe}/state").ConfigureAwait(false),
            BackendState = await Number($"{be}/state").ConfigureAwait(false),
            EventChannel = await Number($"{fe}/event-channel").ConfigureAwait(false),
            BackendPath = be,
            FrontendPath = fe,
        };
        if (kind == "vif")
        {
            var v = domain.Vifs.FirstOrDefault(x => x.Devid == devid);
            var config = domain.Config.Vifs.FirstOrDefault(x => x.Devid == devid);
            return info with
            {
                Mac = v.Mac,
                Vifname = v.Vifname,
                Bridge = config?.Bridge,
                TxRingRef = await Number($"{fe}/tx-ring-ref").ConfigureAwait(false),
                RxRingRef = await Number($"{fe}/rx-ring-ref").ConfigureAwait(false),
            };
        }
        var disk = domain.Config.Disks.FirstOrDefault(d => d.VirtualDevice == devid);
        return info with
        {
            Vdev = disk?.Vdev,
            Target = disk?.Target,
            Mode = disk is null ? null : disk.ReadOnly ? "r" : "w",
            RingRef = await Number($"{fe}/ring-ref").ConfigureAwait(false),
        };
    }

    /// <summary>
    /// <c>xl rename</c>: the domain's <c>name</c> in xenstore and its network namespace's name follow; its
    /// cgroup keeps the name it was created with (a cgroup is found through the domain, not by name).
    /// </summary>
    public async Task RenameAsync(string nameOrId, string newName, CancellationToken cancellationToken = default)
    {
        if (!KernelNames.IsValid(newName))
            throw new DomainException(400, $"'{newName}' is not a valid domain name: letters, digits, '-', '_' and '.', at most {KernelNames.MaxNameLength}, not starting with '.' or '-'");
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var domain = Get(nameOrId);
            if (domain.Name == newName) return;
            lock (_gate)
                if (_domains.Values.Any(d => d.Name == newName || d.KernelName == newName))
                    throw new DomainException(409, $"a domain named '{newName}' exists already");
            if (domain.Agent is { NetnsName: { } oldNs, AgentPid: > 0 } agent && spawner is not null)
            {
                var newNs = spawner.Names.Netns(newName);
                try
                {
                    NetnsNames.Attach(newNs, agent.AgentPid);
                    NetnsNames.Detach(oldNs);
                    agent.SetNetns(newNs);
                }
                catch (Exception e) when (e is IOException or InvalidOperationException)
                {
                    throw new DomainException(409, $"cannot rename the network namespace {oldNs} to {newNs}: {e.Message}");
                }
            }
            await dom0.TransactAsync(async tx =>
            {
                await dom0.WriteAsync($"{XenstoreLayout.DomainPath(domain.Domid)}/name", newName, tx, cancellationToken).ConfigureAwait(false);
                await dom0.WriteAsync($"/vm/{domain.Uuid:D}/name", newName, tx, cancellationToken).ConfigureAwait(false);
            }, cancellationToken: cancellationToken).ConfigureAwait(false);
            var old = domain.Name;
            lock (_gate) domain.Config = domain.Config with { Name = newName };
            _log.LogInformation("domain {Old} ({Domid}) renamed {New}", old, domain.Domid, newName);
        }
        finally { _lock.Release(); }
    }

    /// <summary>
    /// xl's <c>preserve_domain</c> (libxl_domain_preserve): an ended domain keeps its memory and xenstore
    /// tree for inspection, gets a new name (its own with <c>-YYYYMMDDTHHMMZ</c>) and a new <c>/vm</c> uuid,
    /// and gives up what a new domain of its old name needs: its network namespace name, its cgroup, its
    /// vifs' MACs and names. <c>xenio destroy</c> frees the rest.
    /// </summary>
    private async Task PreserveAsync(DomainRecord domain)
    {
        if (domain.Agent is { } agent)
        {
            try { await agent.DestroyAsync().ConfigureAwait(false); }
            catch (Exception e) { _log.LogWarning("domain {Name}: releasing its processes' names: {Error}", domain.Name, e.Message); }
        }
        await _lock.WaitAsync().ConfigureAwait(false);
        try
        {
            lock (_gate) if (!_domains.ContainsKey(domain.Domid)) return;
            var stamp = DateTime.UtcNow.ToString("-yyyyMMdd'T'HHmm'Z'", CultureInfo.InvariantCulture);
            var stem = domain.Name.Length + stamp.Length + 4 > KernelNames.MaxNameLength
                ? domain.Name[..(KernelNames.MaxNameLength - stamp.Length - 4)] : domain.Name;
            var newName = stem + stamp;
            lock (_gate)
                for (int n = 2; _domains.Values.Any(d => d != domain && d.Name == newName); n++)
                    newName = $"{stem}{stamp}-{n}";
            var uuid = Guid.NewGuid();
            var dom = XenstoreLayout.DomainPath(domain.Domid);
            var vm = $"/vm/{uuid:D}";
            await XenstoreLayoutWriter.ApplyAsync(dom0,
            [
                new XenstoreRemove($"/vm/{domain.Uuid:D}"),
                new XenstoreMakeNode(vm, XenstoreLayout.ReadOnlyForGuest(domain.Domid)),
                new XenstoreWriteValue($"{vm}/uuid", uuid.ToString("D")),
                new XenstoreWriteValue($"{vm}/name", newName),
                new XenstoreWriteValue($"{dom}/vm", vm),
                new XenstoreWriteValue($"{dom}/name", newName),
            ]).ConfigureAwait(false);
            var old = domain.Name;
            lock (_gate)
            {
                domain.Config = domain.Config with { Name = newName };
                domain.Uuid = uuid;
                domain.KernelName = "";
                domain.Vifs = [];
            }
            _log.LogInformation("domain {Old} ({Domid}) preserved as {New}", old, domain.Domid, newName);
        }
        catch (Exception e) when (e is XenstoreException or IOException)
        {
            _log.LogWarning("domain {Name}: preserving it: {Error}", domain.Name, e.Message);
        }
        finally { _lock.Release(); }
    }

    /// <summary><c>xl sysrq</c>: writes the key to <c>control/sysrq</c>; the guest acts on it and clears it.</summary>
    public async Task SysrqAsync(string nameOrId, string key, CancellationToken cancellationToken = default)
    {
        if (key.Length != 1 || !char.IsAsciiLetterOrDigit(key[0]))
            throw new DomainException(400, $"sysrq '{key}': one letter or digit (b reboot, o poweroff, c crash)");
        var domain = Live(nameOrId);
        await dom0.WriteAsync($"{XenstoreLayout.DomainPath(domain.Domid)}/control/sysrq", key, cancellationToken: cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The domains with what only xenstore knows: the console's TCP port consoled publishes in
    /// <c>console/telnet-port</c> (none while no consoled serves it).
    /// </summary>
    public async Task<List<DomainInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var list = new List<DomainInfo>();
        foreach (var d in Domains)
        {
            var info = d.Info();
            string? port = null;
            try { port = await dom0.TryReadAsync($"{XenstoreLayout.DomainPath(d.Domid)}/console/telnet-port", cancellationToken: cancellationToken).ConfigureAwait(false); }
            catch (XenstoreException) { }
            list.Add(int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p is > 0 and < 65536 ? info with { ConsolePort = p } : info);
        }
        return list;
    }

    /// <summary><c>xl info</c>'s figures for this host: the page pool and the domains.</summary>
    public HostInfo Info()
    {
        var pool = host.Pool;
        var domains = Domains;
        return new HostInfo
        {
            Version = typeof(DomainManager).Assembly.GetName().Version?.ToString() ?? "0",
            TotalMemoryMiB = pool.BudgetPages / 256,
            FreeMemoryMiB = pool.FreePages / 256,
            TotalPages = pool.BudgetPages,
            FreePages = pool.FreePages,
            Domains = domains.Count,
            RunningDomains = domains.Count(d => d.State is DomainState.Running),
            HostMemoryMiB = HostMemoryMiB(),
            Cpus = Environment.ProcessorCount,
            Hostname = Environment.MachineName,
            Kernel = KernelRelease(),
        };
    }

    private static long HostMemoryMiB()
    {
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal)
                    && long.TryParse(line.AsSpan(9).Trim().TrimEnd("kB").Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var kib))
                    return kib / 1024;
        }
        catch (IOException) { }
        return 0;
    }

    private static string KernelRelease()
    {
        try { return File.ReadAllText("/proc/sys/kernel/osrelease").Trim(); }
        catch (IOException) { return ""; }
    }
}

/// <summary>One device as <c>network-list</c> and <c>block-list</c> show it; -1 where xenstore has no value yet.</summary>
public sealed record DeviceInfo
{
    public required string Kind { get; init; }
    public int Devid { get; init; }
    public int BackendId { get; init; }
    public int FrontendId { get; init; }
    /// <summary>The frontend's XenbusState (xl's "state").</summary>
    public int State { get; init; }
    public int BackendState { get; init; }
    public int EventChannel { get; init; }
    public string? Mac { get; init; }
    public string? Vifname { get; init; }
    public string? Bridge { get; init; }
    public int? TxRingRef { get; init; }
    public int? RxRingRef { get; init; }
    public string? Vdev { get; init; }
    public string? Target { get; init; }
    public string? Mode { get; init; }
    public int? RingRef { get; init; }
    public required string BackendPath { get; init; }
    public required string FrontendPath { get; init; }
}

/// <summary><c>GET /info</c>: xl info's host and pool figures.</summary>
public sealed record HostInfo
{
    public required string Version { get; init; }
    public long TotalMemoryMiB { get; init; }
    public long FreeMemoryMiB { get; init; }
    public long TotalPages { get; init; }
    public long FreePages { get; init; }
    public int Domains { get; init; }
    public int RunningDomains { get; init; }
    public long HostMemoryMiB { get; init; }
    public int Cpus { get; init; }
    public string? Hostname { get; init; }
    public string? Kernel { get; init; }
}
