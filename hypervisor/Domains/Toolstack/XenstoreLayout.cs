using System.Globalization;
using XenIo.Hypervisor.Abi;
using XenIo.Hypervisor.Store;

namespace XenIo.Hypervisor.Domains.Toolstack;

/// <summary>
/// One step of laying out a domain in xenstore: remove a subtree, create a node with permissions,
/// or write a value (which, for a new node, inherits its parent's permissions as in xenstored).
/// </summary>
public abstract record XenstoreStep(string Path);

public sealed record XenstoreRemove(string Path) : XenstoreStep(Path);

public sealed record XenstoreMakeNode(string Path, XenstorePermission[] Permissions) : XenstoreStep(Path);

public sealed record XenstoreWriteValue(string Path, string Value) : XenstoreStep(Path);

/// <summary>The two paths of a split device (<c>libxl__device_frontend_path</c> / <c>_backend_path</c>).</summary>
public readonly record struct DevicePaths(string Frontend, string Backend);

/// <summary>
/// The xenstore nodes libxl writes for a domain and its devices (libxl_create.c
/// <c>libxl__domain_make</c> and <c>libxl__build_post</c>, libxl_device.c
/// <c>libxl__device_generic_add</c>, and the vif, vbd and console adders), with libxl's keys and
/// permissions, so frontends and backends written for Xen find what they expect. Pure: it returns
/// steps for <see cref="XenstoreLayoutWriter"/> to apply in one transaction.
/// </summary>
public static class XenstoreLayout
{
    public const ushort Dom0 = DomainIds.Dom0;

    /// <summary>The console's ring size limit libxl writes (1 MiB).</summary>
    public const int ConsoleLimit = 1048576;

    public static string DomainPath(ushort domid) => $"/local/domain/{domid}";

    public static string LibxlPath(ushort domid) => $"/libxl/{domid}";

    /// <summary>Owned by dom0, readable by the guest (libxl's <c>roperm</c>).</summary>
    public static XenstorePermission[] ReadOnlyForGuest(ushort domid) =>
        [new(Dom0, XenstoreAccess.None), new(domid, XenstoreAccess.Read)];

    /// <summary>Owned by the guest, which may then read and write it (libxl's <c>rwperm</c>).</summary>
    public static XenstorePermission[] OwnedByGuest(ushort domid) => [new(domid, XenstoreAccess.None)];

    /// <summary>dom0 only (libxl's <c>noperm</c>).</summary>
    public static XenstorePermission[] Dom0Only() => [new(Dom0, XenstoreAccess.None)];

    /// <summary>
    /// <c>/local/domain/&lt;id&gt;</c> and <c>/vm/&lt;uuid&gt;</c> as <c>libxl__domain_make</c> creates
    /// them, then what <c>libxl__build_post</c> adds once memory and the store ring exist.
    /// </summary>
    public static IReadOnlyList<XenstoreStep> Domain(ushort domid, string name, Guid uuid, long targetKiB, long staticMaxKiB,
        int vcpus, uint storeRingRef, uint storePort)
    {
        var dom = DomainPath(domid);
        var vm = $"/vm/{uuid:D}";
        var ro = ReadOnlyForGuest(domid);
        var rw = OwnedByGuest(domid);
        var steps = new List<XenstoreStep>
        {
            new XenstoreRemove(dom),
            new XenstoreMakeNode(dom, ro),
            new XenstoreRemove(vm),
            new XenstoreMakeNode(vm, ro),
            new XenstoreRemove(LibxlPath(domid)),
            new XenstoreMakeNode(LibxlPath(domid), Dom0Only()),
            new XenstoreWriteValue($"{dom}/vm", vm),
            new XenstoreWriteValue($"{vm}/uuid", uuid.ToString("D")),
            new XenstoreWriteValue($"{vm}/name", name),
            new XenstoreWriteValue($"{dom}/name", name),
            new XenstoreWriteValue($"{dom}/domid", Invariant(domid)),
        };
        foreach (var sub in new[] { "cpu", "memory", "device", "control" })
            steps.Add(new XenstoreMakeNode($"{dom}/{sub}", ro));
        foreach (var sub in new[] { "control/shutdown", "control/feature-poweroff", "control/feature-reboot", "control/sysrq",
                                    "data", "drivers", "feature", "attr", "error" })
            steps.Add(new XenstoreMakeNode($"{dom}/{sub}", rw));
        steps.Add(new XenstoreWriteValue($"{dom}/control/platform-feature-multiprocessor-suspend", "1"));
        steps.Add(new XenstoreWriteValue($"{dom}/memory/static-max", Invariant(staticMaxKiB)));
        steps.Add(new XenstoreWriteValue($"{dom}/memory/target", Invariant(targetKiB)));
        steps.Add(new XenstoreWriteValue($"{dom}/memory/videoram", "0"));
        for (int cpu = 0; cpu < vcpus; cpu++)
            steps.Add(new XenstoreWriteValue($"{dom}/cpu/{cpu}/availability", "online"));
        steps.Add(new XenstoreWriteValue($"{dom}/store/port", Invariant(storePort)));
        steps.Add(new XenstoreWriteValue($"{dom}/store/ring-ref", Invariant(storeRingRef)));
        return steps;
    }

    /// <summary>Everything of a destroyed domain: its tree, its VM entry and its devices' backend and libxl trees.</summary>
    public static IReadOnlyList<XenstoreStep> DomainRemoval(ushort domid, Guid uuid) =>
    [
        new XenstoreRemove(DomainPath(domid)),
        new XenstoreRemove($"/vm/{uuid:D}"),
        new XenstoreRemove(LibxlPath(domid)),
        new XenstoreRemove($"/local/domain/{Dom0}/backend/vif/{domid}"),
        new XenstoreRemove($"/local/domain/{Dom0}/backend/vbd/{domid}"),
        new XenstoreRemove($"/local/domain/{Dom0}/backend/console/{domid}"),
    ];

    /// <summary>Frontend and backend paths; console 0 lives at <c>/local/domain/&lt;id&gt;/console</c>.</summary>
    public static DevicePaths Paths(string kind, ushort domid, int devid, ushort backendDomid = Dom0) => new(
        kind == "console" && devid == 0 ? $"{DomainPath(domid)}/console" : $"{DomainPath(domid)}/device/{kind}/{devid}",
        $"{DomainPath(backendDomid)}/backend/{kind}/{domid}/{devid}");

    /// <summary>
    /// <c>libxl__device_generic_add</c>: the libxl bookkeeping node, the frontend directory owned by the
    /// guest and readable by the backend, the backend directory the other way round, the cross links,
    /// then the device's own keys. <paramref name="readOnlyFrontend"/> keys are written under the
    /// backend's ownership so the guest can only read them (the console's).
    /// </summary>
    public static IReadOnlyList<XenstoreStep> Device(string kind, ushort domid, int devid,
        IEnumerable<(string Key, string Value)> backend, IEnumerable<(string Key, string Value)> frontend,
        IEnumerable<(string Key, string Value)>? readOnlyFrontend = null, ushort backendDomid = Dom0)
    {
        var (fe, be) = Paths(kind, domid, devid, backendDomid);
        var libxl = $"{LibxlPath(domid)}/device/{kind}/{devid}";
        var steps = new List<XenstoreStep>
        {
            new XenstoreRemove(libxl),
            new XenstoreWriteValue($"{libxl}/frontend", fe),
            new XenstoreWriteValue($"{libxl}/backend", be),
            new XenstoreRemove(fe),
            new XenstoreMakeNode(fe, [new(domid, XenstoreAccess.None), new(backendDomid, XenstoreAccess.Read)]),
            new XenstoreWriteValue($"{fe}/backend", be),
        };
        foreach (var (k, v) in frontend) steps.Add(new XenstoreWriteValue($"{fe}/{k}", v));
        var roPerms = new XenstorePermission[] { new(backendDomid, XenstoreAccess.None), new(domid, XenstoreAccess.Read) };
        foreach (var (k, v) in readOnlyFrontend ?? [])
        {
            steps.Add(new XenstoreMakeNode($"{fe}/{k}", roPerms));
            steps.Add(new XenstoreWriteValue($"{fe}/{k}", v));
        }
        steps.Add(new XenstoreRemove(be));
        steps.Add(new XenstoreMakeNode(be, roPerms));
        steps.Add(new XenstoreWriteValue($"{be}/frontend", fe));
        foreach (var (k, v) in backend) steps.Add(new XenstoreWriteValue($"{be}/{k}", v));
        return steps;
    }

    /// <summary>A vif (<c>libxl__set_xenstore_nic</c>), with XenIo's switch keys <c>bridge</c> and <c>vlan</c>.</summary>
    public static IReadOnlyList<XenstoreStep> Vif(ushort domid, VifConfig vif, string mac, string vifname)
    {
        var backend = new List<(string, string)>
        {
            ("frontend-id", Invariant(domid)), ("online", "1"), ("state", State(XenbusState.Initialising)),
            ("script", vif.Script ?? "vif-bridge"), ("mac", mac), ("bridge", vif.Bridge), ("handle", Invariant(vif.Devid)),
            ("type", "vif"), ("vifname", vifname), ("mtu", Invariant(vif.Mtu)),
        };
        if (vif.Ip is not null) backend.Add(("ip", vif.Ip));
        if (vif.Rate is not null) backend.Add(("rate", vif.Rate.ToXenstore()));
        if (vif.Vlan is { } vlan) backend.Add(("vlan", Invariant(vlan)));
        var frontend = new List<(string, string)>
        {
            ("backend-id", Invariant(Dom0)), ("state", State(XenbusState.Initialising)), ("handle", Invariant(vif.Devid)),
            ("mac", mac), ("mtu", Invariant(vif.Mtu)),
        };
        return Device("vif", domid, vif.Devid, backend, frontend);
    }

    /// <summary>A vbd (<c>libxl__device_disk_add</c>): devid is the vdev's number.</summary>
    public static IReadOnlyList<XenstoreStep> Vbd(ushort domid, DiskConfig disk)
    {
        var backend = new List<(string, string)>
        {
            ("params", disk.Target ?? ""), ("format", disk.Format.ToString().ToLowerInvariant()),
            ("frontend-id", Invariant(domid)), ("online", "1"), ("removable", disk.Cdrom ? "1" : "0"), ("bootable", "1"),
            ("state", State(XenbusState.Initialising)), ("dev", disk.Vdev), ("type", "qdisk"),
            ("mode", disk.ReadOnly ? "r" : "w"), ("device-type", disk.Cdrom ? "cdrom" : "disk"),
            ("discard-enable", disk.Discard && !disk.ReadOnly ? "1" : "0"),
        };
        var frontend = new List<(string, string)>
        {
            ("backend-id", Invariant(Dom0)), ("state", State(XenbusState.Initialising)),
            ("virtual-device", Invariant(disk.VirtualDevice)), ("device-type", disk.Cdrom ? "cdrom" : "disk"),
            ("trusted", "1"),
        };
        return Device("vbd", domid, disk.VirtualDevice, backend, frontend);
    }

    /// <summary>The primary console (<c>libxl__device_console_add</c>): its ring keys are read-only for the guest.</summary>
    public static IReadOnlyList<XenstoreStep> Console(ushort domid, uint ringRef, uint port, string name)
    {
        var backend = new List<(string, string)>
        {
            ("frontend-id", Invariant(domid)), ("online", "1"), ("state", State(XenbusState.Initialising)),
            ("protocol", "vt100"), ("name", name),
        };
        var frontend = new List<(string, string)> { ("backend-id", Invariant(Dom0)), ("state", State(XenbusState.Initialising)) };
        var readOnly = new List<(string, string)>
        {
            ("limit", Invariant(ConsoleLimit)), ("type", "xenconsoled"), ("output", "pty"), ("tty", ""),
            ("port", Invariant(port)), ("ring-ref", Invariant(ringRef)),
        };
        return Device("console", domid, 0, backend, frontend, readOnly);
    }

    /// <summary>Detaching a device: its frontend, backend and libxl nodes.</summary>
    public static IReadOnlyList<XenstoreStep> DeviceRemoval(string kind, ushort domid, int devid)
    {
        var (fe, be) = Paths(kind, domid, devid);
        return [new XenstoreRemove(fe), new XenstoreRemove(be), new XenstoreRemove($"{LibxlPath(domid)}/device/{kind}/{devid}")];
    }

    private static string State(XenbusState state) => Invariant((int)state);

    private static string Invariant<T>(T value) where T : IFormattable => value.ToString(null, CultureInfo.InvariantCulture);
}
