using System.Text.Json;
using System.Text.Json.Serialization;

namespace XenIo.Cli.Config;

/// <summary>
/// The instance's defaults: embedded values, overridden by <c>xenio.json</c> (<c>--config FILE</c>, else
/// <c>XENIO_CONFIG</c>, else <c>/etc/xenio/xenio.json</c> when it exists), overridden by <c>XENIO_*</c>
/// variables; a verb's own option overrides them all. No file is needed: the embedded defaults are a
/// working instance with one bridge, <c>xenbr0</c>.
/// </summary>
public sealed record XenioSettings
{
    public const string DefaultFile = "/etc/xenio/xenio.json";

    /// <summary>Sockets and pid files; null: /run/xenio as root, else $XDG_RUNTIME_DIR/xenio.</summary>
    public string? RunDirectory { get; set; }

    public string StateDirectory { get; set; } = "/var/lib/xenio";

    /// <summary>Daemon logs; null: /var/log/xenio as root, else under the run directory.</summary>
    public string? LogDirectory { get; set; }

    /// <summary>The bridge a vif joins when its spec names none.</summary>
    public string DefaultBridge { get; set; } = "xenbr0";

    /// <summary>First TCP port for consoles; 0: any free port.</summary>
    public int ConsolePortBase { get; set; }

    /// <summary>xl.cfg files <c>xenio up</c> boots (xendomains' /etc/xen/auto).</summary>
    public string AutostartDirectory { get; set; } = "/etc/xenio/auto";

    /// <summary>
    /// Loads the settings: <paramref name="file"/> if given (it must exist), else <c>XENIO_CONFIG</c> (must
    /// exist), else <see cref="DefaultFile"/> if present; then the <c>XENIO_*</c> variables.
    /// </summary>
    public static XenioSettings Load(string? file = null, Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        var path = file is { Length: > 0 } ? file : environment("XENIO_CONFIG") is { Length: > 0 } env ? env : null;
        var settings = new XenioSettings();
        if (path is not null || File.Exists(DefaultFile))
        {
            path ??= DefaultFile;
            byte[] json;
            try { json = File.ReadAllBytes(path); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new XenioSettingsException($"{path}: cannot read the configuration: {e.Message}");
            }
            try { settings = JsonSerializer.Deserialize(json, XenioSettingsJson.Default.XenioSettings) ?? settings; }
            catch (JsonException e)
            {
                throw new XenioSettingsException($"{path}:{(e.LineNumber ?? 0) + 1}:{(e.BytePositionInLine ?? 0) + 1}: {e.Message}");
            }
        }
        string? Var(string name) => environment(name) is { Length: > 0 } v ? v : null;
        settings = settings with
        {
            RunDirectory = Var("XENIO_RUN_DIR") ?? settings.RunDirectory,
            StateDirectory = Var("XENIO_STATE_DIR") ?? settings.StateDirectory,
            LogDirectory = Var("XENIO_LOG_DIR") ?? settings.LogDirectory,
            DefaultBridge = Var("XENIO_DEFAULT_BRIDGE") ?? settings.DefaultBridge,
            AutostartDirectory = Var("XENIO_AUTOSTART_DIR") ?? settings.AutostartDirectory,
        };
        if (Var("XENIO_CONSOLE_PORT_BASE") is { } portBase)
            settings = settings with
            {
                ConsolePortBase = int.TryParse(portBase, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var p)
                    ? p : throw new XenioSettingsException($"XENIO_CONSOLE_PORT_BASE={portBase}: expected a port number"),
            };
        settings.Validate(path ?? "(defaults)");
        return settings;
    }

    private void Validate(string source)
    {
        if (ConsolePortBase is < 0 or > 65535) throw new XenioSettingsException($"{source}: console_port_base {ConsolePortBase}: must be 0..65535");
        if (DefaultBridge.Length is 0 or > 15 || DefaultBridge.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')))
            throw new XenioSettingsException($"{source}: default_bridge '{DefaultBridge}': 1..15 letters, digits, '-', '_' or '.'");
        foreach (var (key, dir) in new[] { ("run_directory", RunDirectory), ("state_directory", StateDirectory), ("log_directory", LogDirectory), ("autostart_directory", AutostartDirectory) })
            if (dir is not null && !Path.IsPathFullyQualified(dir))
                throw new XenioSettingsException($"{source}: {key} '{dir}': must be an absolute path");
    }
}

/// <summary>A settings file or variable that cannot be used; the message names it.</summary>
public sealed class XenioSettingsException(string message) : Exception(message);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true, UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow)]
[JsonSerializable(typeof(XenioSettings))]
internal sealed partial class XenioSettingsJson : JsonSerializerContext;
