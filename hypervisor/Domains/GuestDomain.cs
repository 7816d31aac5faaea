using XenIo.Hypervisor.Grants;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Memory;

namespace XenIo.Hypervisor.Domains;

/// <summary>
/// What a guest process builds from the two descriptors it inherits: its memory, its grant table
/// (frames 0..N-1), a page allocator for the frames above it, and its hypercall connection.
/// </summary>
public sealed class GuestDomain : IDisposable
{
    private GuestDomain(DomainMemory memory, HypercallClient hypercalls, DomainDescription info)
    {
        Memory = memory;
        Hypercalls = hypercalls;
        Domid = info.Domid;
        GrantTable = new GrantTable(memory, info.GrantFrames);
        Pages = new GuestPageAllocator(info.GrantFrames, memory.FrameCount);
    }

    public ushort Domid { get; }

    public DomainMemory Memory { get; }

    public HypercallClient Hypercalls { get; }

    public GrantTable GrantTable { get; }

    public GuestPageAllocator Pages { get; }

    /// <summary>Takes ownership of both descriptors; asks hyperd who we are.</summary>
    public static GuestDomain Attach(int memoryFd, int hypercallFd)
    {
        var hypercalls = new HypercallClient(hypercallFd);
        var memoryHandle = new Microsoft.Win32.SafeHandles.SafeFileHandle(memoryFd, ownsHandle: true);
        try
        {
            var info = hypercalls.DomainInfo();
            var memory = DomainMemory.Map(memoryHandle);
            if (memory.FrameCount != info.Frames)
            {
                memory.Dispose();
                throw new InvalidDataException($"memory has {memory.FrameCount} frames, hyperd says {info.Frames}");
            }
            return new GuestDomain(memory, hypercalls, info);
        }
        catch
        {
            memoryHandle.Dispose();
            hypercalls.Dispose();
            throw;
        }
    }

    public static GuestDomain Attach(GuestDescriptors descriptors) => Attach(descriptors.MemoryFd, descriptors.HypercallFd);

    public void Dispose()
    {
        Hypercalls.Dispose();
        Memory.Dispose();
    }
}
