using XenIo.Hypervisor.Domains.Cgroups;

namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>
/// What a crashed instance (hyperd killed, host rebooted into a live run directory) leaves of its
/// domains in the kernel: cgroups holding agents and their processes, and ip netns names. For
/// <c>xenio cleanup</c>. Names are found through the instance's cgroup folder, never by listing
/// /run/netns alone: without an instance prefix that would take other tools' namespaces too.
/// </summary>
public static class DomainLeftovers
{
    /// <summary>Domain names of the instance that still have a cgroup.</summary>
    public static IReadOnlyList<string> Find(CgroupLayout layout, KernelNames names) =>
        [.. DomainCgroup.FindLeftovers(layout, names).Select(Path.GetFileName).OfType<string>().Distinct()];

    /// <summary>Kills every process of the instance's domains, removes their cgroups and netns names; returns the domains.</summary>
    public static IReadOnlyList<string> Remove(CgroupLayout layout, KernelNames names)
    {
        var domains = Find(layout, names);
        DomainCgroup.RemoveLeftovers(layout, names);
        foreach (var domain in domains)
            if (KernelNames.IsValid(domain)) NetnsNames.Detach(names.Netns(domain));
        return domains;
    }
}
