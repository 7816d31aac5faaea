using System.Net;
using XenIo.Consoled.Logs;
using XenIo.Consoled.Rings;
using XenIo.Consoled.Viewers;

namespace XenIo.Consoled;

/// <summary>Everything consoled can be told (configuration section <c>Consoled</c>).</summary>
public sealed class ConsoledOptions
{
    public MultiplexerOptions Multiplexer { get; set; } = new();

    public ConsoleLogOptions Log { get; set; } = new();

    /// <summary>Guest output rate limit for ring consoles.</summary>
    public RateLimit RateLimit { get; set; } = RateLimit.Default;

    /// <summary>Bytes of recent output replayed to a viewer on attach.</summary>
    public int ScrollbackBytes { get; set; } = Buffers.Scrollback.DefaultCapacity;

    /// <summary>Also open a raw (no telnet) port per console, for socat and nc.</summary>
    public bool RawPorts { get; set; }

    /// <summary>File of per-console tokens (0600); null keeps them in memory.</summary>
    public string? TokenFile { get; set; }

    /// <summary>Group whose members attach without a token on loopback; null: root only.</summary>
    public string? AdministratorGroup { get; set; } = Access.AdministratorCheck.DefaultGroup;

    /// <summary>Ask everybody for a token, administrators on loopback included.</summary>
    public bool AlwaysRequireTokens { get; set; }

    /// <summary>Tokens are required from everyone when the multiplexer listens beyond loopback.</summary>
    public bool RequireTokens => AlwaysRequireTokens || !IPAddress.IsLoopback(Multiplexer.ListenAddress);
}

/// <summary>A console to register: its name and how it behaves; the guest end is passed alongside.</summary>
public sealed class ConsoleSpec
{
    public ConsoleSpec(string name)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        Name = name;
    }

    /// <summary>The domain's name (unique among consoles).</summary>
    public string Name { get; }

    /// <summary>xenstore <c>console/limit</c>: pending output kept before the middle is discarded.</summary>
    public int OutputLimit { get; set; } = Buffers.ConsoleOutputBuffer.DefaultLimit;

    /// <summary>Per-console override of <see cref="ConsoledOptions.RawPorts"/>.</summary>
    public bool? RawPort { get; set; }

    /// <summary>Called with the key of a SysRq request (the domains wiring writes <c>control/sysrq</c>).</summary>
    public Action<char>? SysrqRequested { get; set; }

    /// <summary>Called once the console's ports are bound (the domains wiring publishes them in xenstore).</summary>
    public Action<ConsolePorts>? PortsPublished { get; set; }
}

/// <summary>A registered console: where to reach it and its token.</summary>
public sealed record ConsoleRegistration(ConsolePorts Ports, string Token, ConsoleHub Hub);
