using XenIo.Hypervisor.Domains;

namespace XenIo.Cli.Config;

/// <summary>
/// A <c>diskspec</c> (Xen's xl-disk-configuration): comma-separated positional parameters
/// (<c>target, format, vdev, access</c>), <c>key=value</c> pairs and flags; <c>target=</c> takes the
/// rest of the string and so comes last; the deprecated <c>format:target,vdev[:cdrom],access</c> form
/// and its prefixes are accepted too. Pure: one string in, a <see cref="DiskConfig"/> out.
/// </summary>
public static class DiskSpec
{
    private static readonly string[] s_positional = ["target", "format", "vdev", "access"];
    private static readonly string[] s_deprecatedIgnoredPrefixes = ["tapdisk", "tap2", "tap", "aio", "ioemu", "file", "phy"];
    private static readonly string[] s_deprecatedScriptPrefixes = ["iscsi", "nbd", "enbd", "drbd"];

    public static DiskConfig Parse(string spec, Action<string>? warn = null)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        bool cdrom = false, discard = true, directIoSafe = false;
        int nextPositional = 0;
        bool sawDeprecatedColonSyntax = false;

        void Set(string key, string value)
        {
            if (values.ContainsKey(key)) throw new FormatException($"disk parameter '{key}' given twice in '{spec}'");
            values[key] = value;
        }

        var rest = spec;
        while (rest.Length > 0)
        {
            int comma = rest.IndexOf(',', StringComparison.Ordinal);
            var raw = comma < 0 ? rest : rest[..comma];
            var part = raw.TrimStart();
            if (part.StartsWith("target=", StringComparison.Ordinal))
            {
                // target= consumes the whole rest, commas and trailing white space included.
                values["target"] = rest.TrimStart()["target=".Length..];
                break;
            }
            rest = comma < 0 ? "" : rest[(comma + 1)..];

            int eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq > 0)
            {
                var key = part[..eq].Trim();
                var value = part[(eq + 1)..];
                switch (key)
                {
                    case "format" or "vdev" or "access": Set(key, value); break;
                    case "devtype":
                        if (value != "cdrom") throw new FormatException($"bad devtype '{value}' in '{spec}': expected cdrom");
                        cdrom = true; break;
                    case "backendtype":
                        if (value is not ("phy" or "tap" or "qdisk")) throw new FormatException($"bad backendtype '{value}' in '{spec}': expected phy, tap or qdisk");
                        Set(key, value); break;
                    case "script": Set(key, value); break;
                    case "backend":
                        warn?.Invoke($"disk key 'backend' ignored: driver domains are not supported, the backend is dom0");
                        break;
                    case "colo-host" or "colo-port" or "colo-export" or "active-disk" or "hidden-disk":
                        throw new FormatException($"disk parameter '{key}' (COLO replication) is not supported");
                    default:
                        throw new FormatException($"unknown disk parameter '{key}' in '{spec}' (valid: target, format, vdev, access, devtype, backendtype, script, cdrom, discard, no-discard, direct-io-safe)");
                }
                continue;
            }
            switch (part.TrimEnd())
            {
                case "cdrom": cdrom = true; continue;
                case "discard": discard = true; continue;
                case "no-discard": discard = false; continue;
                case "direct-io-safe": directIoSafe = true; continue;
                case "colo": throw new FormatException("disk flag 'colo' (COLO replication) is not supported");
            }
            // A positional parameter (an empty one still takes its place and means "default").
            var positional = part.TrimEnd();
            if (nextPositional == 0 && positional.Contains(':') && !positional.StartsWith('/'))
            {
                positional = StripDeprecatedPrefixes(positional, values, ref sawDeprecatedColonSyntax);
            }
            if (nextPositional is 1 or 2 && positional.EndsWith(":cdrom", StringComparison.Ordinal))
            {
                // Old syntax: ",hdc:cdrom,r" or "raw:/x.iso,hdc:cdrom,ro" (vdev:devtype).
                positional = positional[..^":cdrom".Length];
                cdrom = true;
                sawDeprecatedColonSyntax = true;
            }
            if (sawDeprecatedColonSyntax && nextPositional == 1)
                nextPositional = 2; // old syntax: target,vdev[:devtype],access (no format position)
            if (nextPositional >= s_positional.Length)
                throw new FormatException($"too many positional parameters in '{spec}': expected target, format, vdev, access");
            var name = s_positional[nextPositional++];
            if (positional.Length > 0) Set(name, positional);
        }

        values.TryGetValue("target", out var target);
        if (string.IsNullOrEmpty(target)) target = null;
        else if (!target.StartsWith('/')) target = "/dev/" + target;

        var format = values.TryGetValue("format", out var f) && f.Length > 0 ? ParseFormat(f, spec) : DiskFormat.Raw;
        if (!values.TryGetValue("vdev", out var vdev) || vdev.Length == 0)
            throw new FormatException($"disk '{spec}' has no vdev: give one, e.g. xvda");
        var number = Vdev.Parse(vdev) ?? throw new FormatException($"bad vdev '{vdev}' in '{spec}': expected xvdX, hdX, sdX or dNpM (docs/misc/vbd-interface)");
        bool readOnly = cdrom;
        if (values.TryGetValue("access", out var access) && access.Length > 0)
        {
            readOnly = access switch
            {
                "ro" or "r" => true,
                "rw" or "w" => false,
                _ => throw new FormatException($"bad access '{access}' in '{spec}': expected ro, r, rw or w"),
            };
        }
        if (cdrom && !readOnly) throw new FormatException($"disk '{spec}': a cdrom is read-only, drop access=rw");
        if (target is null && !cdrom) throw new FormatException($"disk '{spec}' has no target: give the image path (only a cdrom may be empty)");

        return new DiskConfig
        {
            Target = target,
            Format = format,
            Vdev = vdev,
            VirtualDevice = number,
            ReadOnly = readOnly,
            Cdrom = cdrom,
            Discard = discard,
            DirectIoSafe = directIoSafe,
            Script = values.GetValueOrDefault("script"),
            BackendType = values.GetValueOrDefault("backendtype"),
        };
    }

    /// <summary>Strips <c>tap:aio:</c>-style prefixes and turns <c>raw:</c>/<c>qcow2:</c>/<c>vhd:</c> into the format.</summary>
    private static string StripDeprecatedPrefixes(string positional, Dictionary<string, string> values, ref bool deprecated)
    {
        while (true)
        {
            int colon = positional.IndexOf(':', StringComparison.Ordinal);
            if (colon < 0) return positional;
            var prefix = positional[..colon];
            if (prefix is "raw" or "qcow" or "qcow2" or "vhd")
            {
                values["format"] = prefix;
            }
            else if (s_deprecatedScriptPrefixes.Contains(prefix))
            {
                values["script"] = "block-" + prefix;
            }
            else if (!s_deprecatedIgnoredPrefixes.Contains(prefix))
            {
                return positional;
            }
            deprecated = true;
            positional = positional[(colon + 1)..];
        }
    }

    private static DiskFormat ParseFormat(string value, string spec) => value switch
    {
        "raw" => DiskFormat.Raw,
        "qcow" => DiskFormat.Qcow,
        "qcow2" => DiskFormat.Qcow2,
        "vhd" => DiskFormat.Vhd,
        "qed" => DiskFormat.Qed,
        _ => throw new FormatException($"bad format '{value}' in '{spec}': expected raw, qcow, qcow2, vhd or qed"),
    };
}

/// <summary>Virtual device names to numbers (docs/misc/vbd-interface).</summary>
public static class Vdev
{
    /// <summary>The vdev's number, or null when the name is not one Xen knows.</summary>
    public static int? Parse(string name)
    {
        if (name.Length > 0 && name.All(char.IsAsciiDigit))
            return int.TryParse(name, out var n) && n > 0 ? n : null;
        if (name.StartsWith("xvd", StringComparison.Ordinal)) return Xvd(name.AsSpan(3));
        if (name.StartsWith("hd", StringComparison.Ordinal)) return Hd(name.AsSpan(2));
        if (name.StartsWith("sd", StringComparison.Ordinal)) return Sd(name.AsSpan(2));
        if (name.StartsWith('d')) return DiskPartition(name.AsSpan(1));
        return null;
    }

    private static int? Xvd(ReadOnlySpan<char> rest)
    {
        if (!TryLetters(ref rest, out var disk) || !TryPartition(rest, 255, out var part)) return null;
        return Encode(disk, part);
    }

    private static int? DiskPartition(ReadOnlySpan<char> rest)
    {
        int i = 0;
        while (i < rest.Length && char.IsAsciiDigit(rest[i])) i++;
        if (i == 0 || !int.TryParse(rest[..i], out var disk) || disk > (1 << 20) - 1) return null;
        int part = 0;
        if (i < rest.Length)
        {
            if (rest[i] != 'p' || !int.TryParse(rest[(i + 1)..], System.Globalization.NumberStyles.None, null, out part) || part > 255) return null;
        }
        return Encode(disk, part);
    }

    private static int? Encode(int disk, int part)
    {
        if (disk < 16 && part < 16) return (202 << 8) | (disk << 4) | part;
        if (disk > (1 << 20) - 1 || part > 255) return null;
        return (1 << 28) | (disk << 8) | part;
    }

    private static int? Hd(ReadOnlySpan<char> rest)
    {
        if (!TryLetters(ref rest, out var disk) || disk > 3 || !TryPartition(rest, 63, out var part)) return null;
        return disk < 2 ? (3 << 8) | (disk << 6) | part : (22 << 8) | ((disk - 2) << 6) | part;
    }

    private static int? Sd(ReadOnlySpan<char> rest)
    {
        if (!TryLetters(ref rest, out var disk) || disk > 15 || !TryPartition(rest, 15, out var part)) return null;
        return (8 << 8) | (disk << 4) | part;
    }

    /// <summary>Bijective base-26 disk letters: a=0 … z=25, aa=26 ….</summary>
    private static bool TryLetters(ref ReadOnlySpan<char> rest, out int disk)
    {
        disk = -1;
        int i = 0, value = 0;
        while (i < rest.Length && rest[i] is >= 'a' and <= 'z')
        {
            value = value * 26 + (rest[i] - 'a' + 1);
            if (value > 1 << 20) return false;
            i++;
        }
        if (i == 0) return false;
        disk = value - 1;
        rest = rest[i..];
        return true;
    }

    private static bool TryPartition(ReadOnlySpan<char> rest, int max, out int part)
    {
        part = 0;
        if (rest.Length == 0) return true;
        if (rest[0] == '0') return false;
        return int.TryParse(rest, System.Globalization.NumberStyles.None, null, out part) && part <= max;
    }
}
