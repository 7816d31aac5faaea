namespace XenIo.Hypervisor.Grants;

/// <summary>
/// Told about every grant a backend maps and unmaps, so hyperd can release what a crashed backend
/// held. The hypercall client implements it; <see cref="Mapped"/> is called before the entry is
/// pinned, so a crash after pinning is always covered.
/// </summary>
public interface IGrantMapRecorder
{
    /// <summary>False when hyperd cannot be told (its connection is gone): the map is then refused.</summary>
    bool Mapped(ushort domid, uint gref, bool readOnly);

    void Unmapped(ushort domid, uint gref, bool readOnly);
}
