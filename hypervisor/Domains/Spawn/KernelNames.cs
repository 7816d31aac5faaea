namespace XenIo.Hypervisor.Domains.Spawn;

/// <summary>
/// Names of kernel-global objects a domain owns (its <c>ip netns</c> name, its cgroup). An instance
/// (<c>--instance NAME</c>) prefixes them so several XenIo instances can share a host.
/// </summary>
public sealed class KernelNames
{
    /// <summary>Longest domain name usable as a file name under /run/netns and in cgroupfs.</summary>
    public const int MaxNameLength = 64;

    public KernelNames(string? instance)
    {
        if (instance is not null) Validate(instance, nameof(instance));
        Instance = instance;
    }

    public string? Instance { get; }

    /// <summary><c>""</c>, or <c>instance-</c>.</summary>
    public string Prefix => Instance is null ? "" : Instance + "-";

    /// <summary>The name under /run/netns for a domain.</summary>
    public string Netns(string domainName) => Prefix + Checked(domainName);

    /// <summary>The folder every domain cgroup of this instance sits in, in each hierarchy.</summary>
    public string CgroupParent => Instance is null ? "xenio" : "xenio-" + Instance;

    public string Cgroup(string domainName) => Checked(domainName);

    private static string Checked(string domainName)
    {
        Validate(domainName, nameof(domainName));
        return domainName;
    }

    /// <summary>
    /// Names become file names in /run/netns and cgroupfs: letters, digits, '-', '_', '.', not starting
    /// with '.' or '-', at most <see cref="MaxNameLength"/> characters.
    /// </summary>
    public static bool IsValid(string name)
    {
        if (name.Length is 0 or > MaxNameLength || name[0] is '.' or '-') return false;
        foreach (var c in name)
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')) return false;
        return true;
    }

    private static void Validate(string name, string param)
    {
        if (!IsValid(name))
            throw new ArgumentException(
                $"'{name}' is not a valid name: use letters, digits, '-', '_' and '.', at most {MaxNameLength} characters, not starting with '.' or '-'",
                param);
    }
}
