namespace XenIo.Hypervisor.Domains.Cgroups;

/// <summary>
/// What a domain's cgroup enforces: <c>memory=</c> (<c>maxmem=</c> when larger, so ballooning up
/// stays inside the limit) as memory.max / memory.limit_in_bytes, and <c>vcpus=</c> as a CPU quota of
/// that many CPUs' time per period (cpu.max / cfs_quota_us). Null means unlimited.
/// </summary>
public sealed record CgroupLimits(long? MemoryBytes, int? Vcpus)
{
    /// <summary>The scheduler period the quota is expressed in (the kernel's default, 100 ms).</summary>
    public const int CpuPeriodUs = 100_000;

    /// <summary>The smallest memory limit hyperd sets: below it the agent itself cannot run.</summary>
    public const long MinMemoryMiB = 4;

    public static CgroupLimits None { get; } = new(null, null);

    public static CgroupLimits From(DomainConfig config) =>
        new(Math.Max(config.MemoryMiB, config.MaxMemMiB) * 1024 * 1024, config.Vcpus);
}
