using XenIo.Blkback.Images;
using XenIo.Hypervisor.Abi;

namespace XenIo.Blkback.Requests;

/// <summary>
/// Carries out a validated request on a raw image, given one buffer per segment (the backend's
/// copies of the granted pages' sector ranges, in segment order). The grant copy in and out of the
/// guest's pages is the caller's; this is the part between the two. Returns the BLKIF_RSP_* status
/// for the response: an I/O error is BLKIF_RSP_ERROR, never an exception.
/// </summary>
public static class BlkRequestExecutor
{
    public static short Execute(in BlkRequest request, ReadOnlySpan<IoBuffer> segmentBuffers, RawImage image)
    {
        ArgumentNullException.ThrowIfNull(image);
        if (segmentBuffers.Length != request.SegmentCount) return BlkifStatus.Error;
        long total = 0;
        foreach (var b in segmentBuffers) total += b.Length;
        if (request.Kind != BlkIoKind.Discard && (ulong)total != request.Length) return BlkifStatus.Error;

        int errno;
        switch (request.Kind)
        {
            case BlkIoKind.Read:
                errno = image.ReadV((long)request.Offset, segmentBuffers);
                break;
            case BlkIoKind.Write:
                errno = image.WriteV((long)request.Offset, segmentBuffers);
                break;
            case BlkIoKind.Flush:
                // Data with a flush is written first, then made durable with everything before it.
                errno = request.SegmentCount > 0 ? image.WriteV((long)request.Offset, segmentBuffers) : 0;
                if (errno == 0) errno = image.Flush();
                break;
            case BlkIoKind.Barrier:
                // Everything in flight completes and is durable before the barrier's own data, which is durable before the answer.
                errno = image.Barrier();
                if (errno == 0 && request.SegmentCount > 0)
                {
                    errno = image.WriteV((long)request.Offset, segmentBuffers);
                    if (errno == 0) errno = image.Flush();
                }
                break;
            case BlkIoKind.Discard:
                if (!image.Geometry.DiscardEnabled) return BlkifStatus.EOpNotSupp;
                errno = image.Discard((long)request.Offset, (long)request.Length);
                if (errno == 95) return BlkifStatus.EOpNotSupp; // the host file system cannot punch holes
                break;
            default:
                return BlkifStatus.EOpNotSupp;
        }
        return errno == 0 ? BlkifStatus.Okay : BlkifStatus.Error;
    }
}
