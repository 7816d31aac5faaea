using XenIo.Hypervisor.Domains;

namespace XenIo.Cli.Config;

/// <summary>A problem found in a config file that does not stop it from being used.</summary>
public sealed record ConfigWarning(SourcePosition Position, string Message)
{
    public override string ToString() => $"{Position}: warning: {Message}";
}

/// <summary>
/// Turns an xl.cfg file (plus <c>xenio create FILE key=value…</c> overrides, which xl treats as extra
/// lines) into a <see cref="DomainConfig"/>. Bad values are rejected with file:line:column and what
/// would be valid; unknown keys are warned about, as xl does.
/// </summary>
public static class DomainConfigReader
{
    /// <summary>Keys xl knows that have no meaning for a XenIo guest: accepted with a warning.</summary>
    private static readonly HashSet<string> s_xlKeysWithoutEffect = new(StringComparer.Ordinal)
    {
        "type", "builder", "kernel", "ramdisk", "extra", "root", "cmdline", "bootloader", "bootloader_args",
        "uuid", "cpus", "cpus_soft", "cpu_weight", "cap", "maxvcpus", "vnc", "vncdisplay", "sdl", "serial",
        "boot", "pae", "acpi", "apic", "hap", "device_model_version", "localtime", "seclabel", "pool",
        "vfb", "pci", "usb", "usbdevice", "nestedhvm", "shadow_memory", "videoram", "stdvga", "keymap",
    };

    private static readonly string[] s_xenioKeys = ["init", "gateway", "isolation"];

    public static (DomainConfig Config, IReadOnlyList<ConfigWarning> Warnings) Read(string path, IEnumerable<string>? overrides = null, string? defaultBridge = null)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new XlConfigException(new SourcePosition(path, 0, 0), $"cannot read the config file: {e.Message}");
        }
        return Parse(text, path, overrides, defaultBridge);
    }

    public static (DomainConfig Config, IReadOnlyList<ConfigWarning> Warnings) Parse(string text, string file, IEnumerable<string>? overrides = null, string? defaultBridge = null)
    {
        var settings = XlConfigParser.Parse(text, file).ToList();
        int n = 0;
        foreach (var line in overrides ?? [])
        {
            n++;
            settings.AddRange(XlConfigParser.Parse(QuoteBareOverride(line), $"command line argument {n}"));
        }
        return Build(settings, defaultBridge);
    }

    /// <summary>
    /// <c>xl create cfg name=web</c>: a bare word after '=' is a string, as xl's command line allows.
    /// </summary>
    private static string QuoteBareOverride(string line)
    {
        int eq = line.IndexOf('=', StringComparison.Ordinal);
        if (eq < 0) return line;
        var value = line[(eq + 1)..].Trim();
        bool needsQuotes = value.Length > 0 && value[0] is not ('"' or '\'' or '[') && !value.All(char.IsAsciiDigit) && !value.StartsWith("0x", StringComparison.Ordinal);
        return needsQuotes ? $"{line[..eq]}=\"{value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)}\"" : line;
    }

    private static (DomainConfig, IReadOnlyList<ConfigWarning>) Build(List<XlSetting> settings, string? defaultBridge)
    {
        var warnings = new List<ConfigWarning>();
        // Later settings win, as in xl; += appends to a list.
        var byKey = new Dictionary<string, XlSetting>(StringComparer.Ordinal);
        foreach (var s in settings)
        {
            if (s.Append && byKey.TryGetValue(s.Key, out var prior))
            {
                var merged = new List<XlValue>(AsList(prior).Items);
                merged.AddRange(AsList(s).Items);
                byKey[s.Key] = s with { Value = new XlList(merged, prior.Value.Position), Append = false };
            }
            else
            {
                byKey[s.Key] = s;
            }
        }

        string? name = null;
        long memory = 128, maxmem = 0;
        int vcpus = 1;
        var vifs = new List<VifConfig>();
        var disks = new List<DiskConfig>();
        var onPoweroff = LifecycleAction.Destroy;
        var onReboot = LifecycleAction.Restart;
        var onCrash = LifecycleAction.Destroy;
        IReadOnlyList<string> init = ["/bin/sh"];
        string? gateway = null;
        var isolation = GuestIsolation.Host;

        foreach (var s in byKey.Values)
        {
            switch (s.Key)
            {
                case "name": name = DomainName(s); break;
                case "memory": memory = Integer(s, 1, 1 << 20, "a size in MiB, e.g. 128"); break;
                case "maxmem": maxmem = Integer(s, 1, 1 << 20, "a size in MiB, at least memory"); break;
                case "vcpus": vcpus = (int)Integer(s, 1, 128, "a number of virtual CPUs from 1 to 128"); break;
                case "vif":
                {
                    int devid = 0;
                    foreach (var item in AsList(s).Items)
                    {
                        var spec = StringItem(s, item);
                        var vif = Wrap(item.Position, () => VifSpec.Parse(spec, devid, m => warnings.Add(new(item.Position, m)), defaultBridge));
                        vifs.Add(vif);
                        devid = vif.Devid + 1;
                    }
                    break;
                }
                case "disk":
                    foreach (var item in AsList(s).Items)
                    {
                        var spec = StringItem(s, item);
                        disks.Add(Wrap(item.Position, () => DiskSpec.Parse(spec, m => warnings.Add(new(item.Position, m)))));
                    }
                    break;
                case "on_poweroff": onPoweroff = Action(s); break;
                case "on_reboot": onReboot = Action(s); break;
                case "on_crash": onCrash = Action(s); break;
                case "init": init = InitCommand(s); break;
                case "gateway": gateway = Gateway(s); break;
                case "isolation":
                    isolation = Text(s, "host or userns") switch
                    {
                        "host" => GuestIsolation.Host,
                        "userns" => GuestIsolation.Userns,
                        var v => throw new XlConfigException(s.Value.Position, $"bad isolation '{v}': expected host or userns"),
                    };
                    break;
                default:
                    warnings.Add(new ConfigWarning(s.Position, s_xlKeysWithoutEffect.Contains(s.Key)
                        ? $"'{s.Key}' has no effect on a XenIo guest; ignored"
                        : $"unknown setting '{s.Key}' ignored (XenIo reads name, memory, maxmem, vcpus, vif, disk, on_poweroff, on_reboot, on_crash, {string.Join(", ", s_xenioKeys)})"));
                    break;
            }
        }

        if (name is null)
            throw new XlConfigException(new SourcePosition(settings.FirstOrDefault()?.Position.File ?? "<config>", 1, 1),
                "the domain has no name: add a line name = \"...\"");
        if (maxmem != 0 && maxmem < memory)
            throw new XlConfigException(byKey["maxmem"].Value.Position, $"maxmem {maxmem} is below memory {memory}: raise maxmem or drop it");
        CheckUnique(vifs.Select(v => (v.Devid.ToString(System.Globalization.CultureInfo.InvariantCulture), byKey.GetValueOrDefault("vif"))), "vif devid");
        CheckUnique(vifs.Where(v => v.Vifname is not null).Select(v => (v.Vifname!, byKey.GetValueOrDefault("vif"))), "vifname");
        CheckUnique(disks.Select(d => (d.VirtualDevice.ToString(System.Globalization.CultureInfo.InvariantCulture), byKey.GetValueOrDefault("disk"))), "disk vdev");

        var config = new DomainConfig
        {
            Name = name,
            MemoryMiB = memory,
            MaxMemMiB = maxmem == 0 ? memory : maxmem,
            Vcpus = vcpus,
            Vifs = vifs,
            Disks = disks,
            OnPoweroff = onPoweroff,
            OnReboot = onReboot,
            OnCrash = onCrash,
            Init = init,
            Gateway = gateway,
            Isolation = isolation,
        };
        return (config, warnings);
    }

    private static void CheckUnique(IEnumerable<(string Key, XlSetting? Setting)> items, string what)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, setting) in items)
        {
            if (!seen.Add(key))
                throw new XlConfigException(setting?.Value.Position ?? new SourcePosition("<config>", 0, 0), $"{what} {key} is used twice: each device needs its own");
        }
    }

    private static T Wrap<T>(SourcePosition at, Func<T> parse)
    {
        try
        {
            return parse();
        }
        catch (FormatException e)
        {
            throw new XlConfigException(at, e.Message);
        }
    }

    private static XlList AsList(XlSetting s) => s.Value switch
    {
        XlList l => l,
        XlString str => new XlList([str], str.Position),
        _ => throw new XlConfigException(s.Value.Position, $"'{s.Key}' must be a list of quoted strings, e.g. {s.Key} = ['...']"),
    };

    private static string StringItem(XlSetting s, XlValue item) => item is XlString str
        ? str.Value
        : throw new XlConfigException(item.Position, $"each '{s.Key}' entry must be a quoted string, found {item.Describe()}");

    private static string Text(XlSetting s, string valid) => s.Value is XlString str
        ? str.Value
        : throw new XlConfigException(s.Value.Position, $"'{s.Key}' must be a quoted string ({valid}), found {s.Value.Describe()}");

    private static long Integer(XlSetting s, long min, long max, string valid)
    {
        long v;
        bool ok = s.Value switch
        {
            XlNumber n => n.TryGetInt64(out v),
            XlString str => long.TryParse(str.Value, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out v),
            _ => (v = 0) != 0,
        };
        if (!ok || v < min || v > max)
            throw new XlConfigException(s.Value.Position, $"bad {s.Key} {s.Value.Describe()}: expected {valid} ({min}..{max})");
        return v;
    }

    /// <summary>Domain names become hostnames and namespace names: letters, digits, '-', '_' and '.', 1..63.</summary>
    private static string DomainName(XlSetting s)
    {
        var v = Text(s, "a domain name");
        if (v.Length is 0 or > 63 || !v.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.') || v[0] is '-' or '.')
            throw new XlConfigException(s.Value.Position,
                $"bad name '{v}': expected 1 to 63 letters, digits, '-', '_' or '.', not starting with '-' or '.' (it becomes the guest's hostname)");
        return v;
    }

    private static LifecycleAction Action(XlSetting s) => Text(s, "destroy, restart, preserve or rename-restart") switch
    {
        "destroy" => LifecycleAction.Destroy,
        "restart" => LifecycleAction.Restart,
        "preserve" => LifecycleAction.Preserve,
        "rename-restart" => LifecycleAction.RenameRestart,
        var v => throw new XlConfigException(s.Value.Position, $"bad {s.Key} '{v}': expected destroy, restart, preserve or rename-restart"),
    };

    /// <summary><c>init = "/bin/sh"</c> (split on spaces) or <c>init = ["/usr/bin/iperf3", "-s"]</c> (argv as given).</summary>
    private static IReadOnlyList<string> InitCommand(XlSetting s)
    {
        List<string> argv = s.Value switch
        {
            XlString str => str.Value.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToList(),
            XlList l => l.Items.Select(i => StringItem(s, i)).ToList(),
            _ => throw new XlConfigException(s.Value.Position, "init must be a command string or a list of arguments"),
        };
        if (argv.Count == 0 || !argv[0].StartsWith('/'))
            throw new XlConfigException(s.Value.Position, "init must start with an absolute program path, e.g. init = \"/bin/sh\"");
        return argv;
    }

    private static string Gateway(XlSetting s)
    {
        var v = Text(s, "an IP address");
        if (!VifSpec.TryParseIp(v, out _))
            throw new XlConfigException(s.Value.Position, $"bad gateway '{v}': expected an IPv4 or IPv6 address");
        return v;
    }
}
