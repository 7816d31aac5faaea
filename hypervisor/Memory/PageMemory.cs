using System.Buffers;

namespace XenIo.Hypervisor.Memory;

/// <summary>
/// One page of a domain's mapping as a <see cref="Memory{T}"/>, for code that works on
/// <see cref="Memory{T}"/> (async streams). It pins nothing and frees nothing: the mapping must outlive
/// every use, which the owner of the <see cref="DomainMemory"/> guarantees.
/// </summary>
public sealed unsafe class PageMemory : MemoryManager<byte>
{
    private readonly DomainMemory _memory;
    private readonly uint _frame;

    /// <summary>The page of <paramref name="frame"/>, or null when the frame is outside the domain (untrusted input).</summary>
    public static PageMemory? TryCreate(DomainMemory memory, uint frame) =>
        memory.Contains(frame) ? new PageMemory(memory, frame) : null;

    private PageMemory(DomainMemory memory, uint frame)
    {
        _memory = memory;
        _frame = frame;
    }

    public override Span<byte> GetSpan() => _memory.Page(_frame);

    public override MemoryHandle Pin(int elementIndex = 0) =>
        (uint)elementIndex <= DomainMemory.PageSize
            ? new MemoryHandle(_memory.PagePointer(_frame) + elementIndex)
            : throw new ArgumentOutOfRangeException(nameof(elementIndex));

    public override void Unpin() { }

    protected override void Dispose(bool disposing) { }
}
