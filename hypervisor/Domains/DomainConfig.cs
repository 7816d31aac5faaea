using System.Text.Json.Serialization;

namespace XenIo.Hypervisor.Domains;

/// <summary>
/// A domain's configuration as the toolstack sends it to hyperd (the CLI parses xl.cfg; hyperd
/// receives this as JSON). Sizes follow xl: memory in MiB.
/// </summary>
public sealed record DomainConfig
{
    public required string Name { get; init; }
    public long MemoryMiB { get; set; } = 128;
    public long MaxMemMiB { get; init; }
    public int Vcpus { get; set; } = 1;
    public IReadOnlyList<VifConfig> Vifs { get; set; } = [];
    public IReadOnlyList<DiskConfig> Disks { get; set; } = [];
    public LifecycleAction OnPoweroff { get; set; } = LifecycleAction.Destroy;
    public LifecycleAction OnReboot { get; set; } = LifecycleAction.Restart;
    public LifecycleAction OnCrash { get; set; } = LifecycleAction.Destroy;

    /// <summary>The domain's init program and its arguments (XenIo key <c>init</c>); a shell by default.</summary>
    public IReadOnlyList<string> Init { get; set; } = ["/bin/sh"];

    /// <summary>Default route inside the guest (XenIo key <c>gateway</c>), if any.</summary>
    public string? Gateway { get; init; }

    public GuestIsolation Isolation { get; set; } = GuestIsolation.Host;
}

/// <summary><c>on_poweroff|on_reboot|on_crash</c> actions (xl.cfg).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<LifecycleAction>))]
public enum LifecycleAction
{
    Destroy,
    Restart,
    Preserve,
    RenameRestart,
}

/// <summary>
/// <c>host</c>: guest root is real root with the host's /dev (needed for losetup/mount on its disks;
/// a trusted workload). <c>userns</c>: guest root is unprivileged; disks are plain files.
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<GuestIsolation>))]
public enum GuestIsolation
{
    Host,
    Userns,
}

/// <summary>One <c>vif=</c> entry (xl-network-configuration).</summary>
public sealed record VifConfig
{
    public int Devid { get; init; }

    /// <summary>Colon-separated MAC; null lets the toolstack generate one in Xen's OUI 00:16:3e.</summary>
    public string? Mac { get; init; }
    public string Bridge { get; set; } = "xenbr0";
    public VifRate? Rate { get; init; }

    /// <summary>Space-separated addresses, optionally with a prefix length (<c>198.18.0.1/24</c>).</summary>
    public string? Ip { get; init; }
    public string? Vifname { get; init; }
    public int Mtu { get; set; } = 1500;

    /// <summary>Access VLAN of the vif's switch port (1..4094), if any.</summary>
    public int? Vlan { get; init; }
    public string? Script { get; init; }
    public string Type { get; set; } = "vif";
    public string? Model { get; init; }
}

/// <summary>
/// A vif's credit limit as libxl writes the backend's <c>rate</c> key: bytes per interval and the
/// interval in microseconds.
/// </summary>
public sealed record VifRate(ulong BytesPerInterval, uint IntervalUsecs)
{
    /// <summary>The backend key's value, <c>bytes,usecs</c>.</summary>
    public string ToXenstore() => $"{BytesPerInterval},{IntervalUsecs}";
}

/// <summary>One <c>disk=</c> entry (xl-disk-configuration).</summary>
public sealed record DiskConfig
{
    /// <summary>Image path; null only for an empty CD-ROM drive.</summary>
    public string? Target { get; init; }
    public DiskFormat Format { get; set; } = DiskFormat.Raw;
    public required string Vdev { get; init; }

    /// <summary>The vdev's number (<c>virtual-device</c>), from docs/misc/vbd-interface.</summary>
    public int VirtualDevice { get; init; }
    public bool ReadOnly { get; init; }
    public bool Cdrom { get; init; }
    public bool Discard { get; set; } = true;
    public bool DirectIoSafe { get; init; }
    public string? Script { get; init; }
    public string? BackendType { get; init; }
}

[JsonConverter(typeof(JsonStringEnumConverter<DiskFormat>))]
public enum DiskFormat
{
    Raw,
    Qcow,
    Qcow2,
    Vhd,
    Qed,
}

/// <summary>Source-generated JSON for the toolstack contract (the guest agent is NativeAOT).</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, WriteIndented = true,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(DomainConfig))]
public sealed partial class DomainConfigJson : JsonSerializerContext;
