namespace XenIo.Hypervisor.Abi;

/// <summary><c>EVTCHNSTAT_*</c> (event_channel.h).</summary>
public enum EventChannelStatus : uint
{
    Closed = 0,
    Unbound = 1,
    Interdomain = 2,
    Pirq = 3,
    Virq = 4,
    Ipi = 5,
}

/// <summary><c>XenbusState</c> (io/xenbus.h), written as a decimal string under <c>state</c>.</summary>
public enum XenbusState
{
    Unknown = 0,
    Initialising = 1,
    InitWait = 2,
    Initialised = 3,
    Connected = 4,
    Closing = 5,
    Closed = 6,
    Reconfiguring = 7,
    Reconfigured = 8,
}

/// <summary>Domain ids with a fixed meaning (xen.h).</summary>
public static class DomainIds
{
    public const ushort Dom0 = 0;
    /// <summary><c>DOMID_FIRST_RESERVED</c>: ids from here up are special.</summary>
    public const ushort FirstReserved = 0x7FF0;
    public const ushort Self = 0x7FF0;
    public const ushort Invalid = 0x7FF4;
}
