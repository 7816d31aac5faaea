using XenIo.Hypervisor.Store;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Hypervisor.Domains.Toolstack;

/// <summary>Applies <see cref="XenstoreLayout"/> steps as dom0, all in one transaction retried on EAGAIN, as libxl does.</summary>
public static class XenstoreLayoutWriter
{
    public static Task ApplyAsync(XenstoreClient dom0, IReadOnlyList<XenstoreStep> steps, CancellationToken cancellationToken = default) =>
        dom0.TransactAsync(async tx =>
        {
            foreach (var step in steps)
            {
                switch (step)
                {
                    case XenstoreRemove r:
                        try
                        {
                            await dom0.RmAsync(r.Path, tx, cancellationToken).ConfigureAwait(false);
                        }
                        catch (XenstoreException e) when (e.Error == XsError.ENOENT)
                        {
                            // Nothing to remove: the usual case for a new domain.
                        }
                        break;
                    case XenstoreMakeNode m:
                        await dom0.MkdirAsync(m.Path, tx, cancellationToken).ConfigureAwait(false);
                        await dom0.SetPermsAsync(m.Path, m.Permissions, tx, cancellationToken).ConfigureAwait(false);
                        break;
                    case XenstoreWriteValue w:
                        await dom0.WriteAsync(w.Path, w.Value, tx, cancellationToken).ConfigureAwait(false);
                        break;
                }
            }
        }, cancellationToken: cancellationToken);
}
