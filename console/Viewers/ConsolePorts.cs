namespace XenIo.Consoled.Viewers;

/// <summary>Where a console can be reached: its telnet port and, when enabled, its raw port.</summary>
public sealed record ConsolePorts(string Name, int TelnetPort, int? RawPort);
