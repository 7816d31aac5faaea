using System.Globalization;
using XenIo.Guest.Devices;
using XenIo.Hypervisor.Hypercalls;
using XenIo.Hypervisor.Memory;
using XenIo.Hypervisor.Store.Client;

namespace XenIo.Guest.Balloon;

/// <summary>
/// The agent's balloon driver (Linux's <c>drivers/xen/xen-balloon.c</c> and <c>balloon.c</c>): watches
/// <c>memory/target</c> (KiB, written by the toolstack on <c>xenio mem-set</c>) and moves the domain's
/// reservation towards it. Inflating takes free frames from the guest's page allocator and gives them
/// back with <c>XENMEM_decrease_reservation</c> (hyperd punches them out of the memfd and credits the
/// pool); deflating asks for the ballooned frames again with <c>XENMEM_populate_physmap</c> and returns
/// those hyperd populated to the allocator. As in Linux, a step that cannot finish (no free frames, the
/// pool exhausted) is retried with a growing delay, and the target is a wish, not a promise. Progress is
/// visible from dom0 as the domain's populated pages (<c>xenio list</c>'s Mem, as xl's comes from
/// tot_pages); Linux writes no xenstore key for it either.
/// </summary>
public sealed class BalloonDriver : IFrontendDriver
{
    /// <summary>Frames per hypercall: the protocol's limit (Linux batches a page's worth of frame numbers).</summary>
    public const int BatchFrames = HypercallMessage.MaxFrames;

    private static readonly TimeSpan s_retryMin = TimeSpan.FromMilliseconds(50), s_retryMax = TimeSpan.FromSeconds(5);

    private readonly Stack<uint> _ballooned = new();
    private readonly uint[] _batch = new uint[BatchFrames];

    public string Name => "balloon";

    /// <summary>Frames given back to the host and held by the balloon.</summary>
    public int BalloonedFrames => _ballooned.Count;

    public async Task RunAsync(FrontendContext context, CancellationToken stop)
    {
        var store = context.Store;
        await using var watch = await store.SubscribeAsync("memory/target", "balloon-target", cancellationToken: stop).ConfigureAwait(false);
        long? targetFrames = null;
        var retry = s_retryMin;
        var wake = watch.Events.WaitToReadAsync(stop).AsTask();
        while (true)
        {
            if (wake.IsCompleted)
            {
                if (!await wake.ConfigureAwait(false)) return; // the store closed
                while (watch.Events.TryRead(out _)) { }
                targetFrames = await ReadTargetAsync(context, stop).ConfigureAwait(false) ?? targetFrames;
                retry = s_retryMin;
                wake = watch.Events.WaitToReadAsync(stop).AsTask();
            }
            if (targetFrames is { } target && !Step(context, target))
            {
                // Not there yet and stuck (nothing free to give, or the pool is full): try again later.
                await Task.WhenAny(wake, Task.Delay(retry, stop)).ConfigureAwait(false);
                stop.ThrowIfCancellationRequested();
                retry = TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, s_retryMax.Ticks));
                continue;
            }
            if (targetFrames is { } t && CurrentFrames(context) != t)
            {
                retry = s_retryMin;
                continue; // progress made: keep going in batches, watching between them
            }
            await wake.ConfigureAwait(false);
        }
    }

    /// <summary>The domain's populated frames as this guest sees them: all of its memory but what the balloon holds.</summary>
    public long CurrentFrames(FrontendContext context) => context.Domain.Memory.FrameCount - (long)_ballooned.Count;

    /// <summary>
    /// <c>memory/target</c> in frames, clamped to the domain's size; null (and a log line) when absent or
    /// not a number. dom0 writes it, but it is parsed strictly all the same.
    /// </summary>
    private static async Task<long?> ReadTargetAsync(FrontendContext context, CancellationToken stop)
    {
        string? text;
        try { text = await context.Store.TryReadAsync("memory/target", cancellationToken: stop).ConfigureAwait(false); }
        catch (XenstoreException e)
        {
            context.Log($"balloon: memory/target: {e.Message}");
            return null;
        }
        if (text is null) return null;
        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var kib) || kib > DomainMemory.MaxBytes / 1024)
        {
            context.Log($"balloon: memory/target '{(text.Length > 24 ? text[..24] + "…" : text)}' is not a size in KiB; ignored");
            return null;
        }
        return Math.Min(kib / (DomainMemory.PageSize / 1024), context.Domain.Memory.FrameCount);
    }

    /// <summary>One batch towards <paramref name="targetFrames"/>; false when no progress could be made.</summary>
    public bool Step(FrontendContext context, long targetFrames)
    {
        long current = CurrentFrames(context);
        if (current > targetFrames) return Inflate(context, (int)Math.Min(current - targetFrames, BatchFrames)) > 0;
        if (current < targetFrames) return Deflate(context, (int)Math.Min(targetFrames - current, BatchFrames)) > 0;
        return true;
    }

    /// <summary>Gives up to <paramref name="count"/> free frames back to the host (<c>decrease_reservation</c>).</summary>
    private int Inflate(FrontendContext context, int count)
    {
        var pages = context.Domain.Pages;
        int n = 0;
        while (n < count && pages.TryAllocate(out var frame)) _batch[n++] = frame;
        if (n == 0) return 0;
        int done;
        try { done = Math.Clamp(context.Domain.Hypercalls.DecreaseReservation(_batch.AsSpan(0, n)), 0, n); }
        catch (HypercallException e)
        {
            context.Log($"balloon: decrease_reservation: errno {e.Errno}");
            done = 0;
        }
        for (int i = 0; i < done; i++) _ballooned.Push(_batch[i]);
        // Frames hyperd did not take stay the guest's.
        for (int i = done; i < n; i++) pages.Free(_batch[i]);
        return done;
    }

    /// <summary>Takes up to <paramref name="count"/> ballooned frames back (<c>populate_physmap</c>).</summary>
    private int Deflate(FrontendContext context, int count)
    {
        int n = 0;
        while (n < count && _ballooned.TryPop(out var frame)) _batch[n++] = frame;
        if (n == 0) return 0;
        int done;
        try { done = Math.Clamp(context.Domain.Hypercalls.PopulatePhysmap(_batch.AsSpan(0, n)), 0, n); }
        catch (HypercallException e)
        {
            context.Log($"balloon: populate_physmap: errno {e.Errno}");
            done = 0;
        }
        for (int i = 0; i < done; i++) context.Domain.Pages.Free(_batch[i]);
        // Frames the pool could not give stay in the balloon, in order, for the next attempt.
        for (int i = n - 1; i >= done; i--) _ballooned.Push(_batch[i]);
        return done;
    }
}
