using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Interop;
using XenIo.Hypervisor.Memory;

namespace XenIo.Hypervisor.Tests.Grants;

/// <summary>A guest's memory with its grant table, and a backend's separate mapping of the same memfd.</summary>
internal sealed class GrantTestDomain : IDisposable
{
    public const ushort GuestDomid = 7;
    public const uint Frames = 64;
    public const uint GrantFrames = 2;

    public GrantTestDomain(ushort localDomid = 0)
    {
        Guest = DomainMemory.Create("grant-test", Frames);
        Table = new GrantTable(Guest, GrantFrames);
        int dup = Libc.fcntl((int)Guest.Handle.DangerousGetHandle(), Libc.F_DUPFD_CLOEXEC, 0);
        Backend = new ForeignDomain(DomainMemory.Map(dup), GuestDomid, GrantFrames, localDomid);
    }

    public DomainMemory Guest { get; }

    public GrantTable Table { get; }

    public ForeignDomain Backend { get; }

    public void Dispose()
    {
        Backend.Dispose();
        Guest.Dispose();
    }
}
