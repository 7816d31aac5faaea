using System.IO.MemoryMappedFiles;

namespace XenIo.TestPeer.Rings;

/// <summary>
/// Ring pages shared between OS processes: a file (in /dev/shm when there is one) mapped
/// MAP_SHARED by each, standing in for a granted page mapped by both domains.
/// </summary>
public sealed unsafe class SharedRingFile : IDisposable
{
    private readonly MemoryMappedFile _file;
    private readonly MemoryMappedViewAccessor _view;
    private byte* _pointer;

    private SharedRingFile(string path, int length, bool create)
    {
        Path = path;
        Length = length;
        _file = MemoryMappedFile.CreateFromFile(path, create ? FileMode.Create : FileMode.Open, null, length, MemoryMappedFileAccess.ReadWrite);
        _view = _file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _pointer);
        _pointer += _view.PointerOffset;
    }

    public string Path { get; }
    public int Length { get; }
    public nint Address => (nint)_pointer;
    public Span<byte> Span => new(_pointer, Length);

    /// <summary>A directory for ring files and sockets: /dev/shm when it is there (memory, not disk).</summary>
    public static string TempDirectory(string prefix)
    {
        var root = Directory.Exists("/dev/shm") ? "/dev/shm" : System.IO.Path.GetTempPath();
        var dir = System.IO.Path.Combine(root, $"{prefix}-{Environment.ProcessId}-{Guid.NewGuid():N}"[..40]);
        Directory.CreateDirectory(dir);
        return dir;
    }

    public static SharedRingFile Create(string path, int length) => new(path, length, create: true);
    public static SharedRingFile Open(string path, int length) => new(path, length, create: false);

    public void Dispose()
    {
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _file.Dispose();
    }
}
