using System.Threading.Tasks.Sources;

namespace XenIo.Hypervisor.Store;

/// <summary>
/// A level-triggered wake-up for one waiter at a time, reusable without allocating: <see cref="Set"/>
/// before <see cref="WaitAsync"/> makes the wait complete at once. <see cref="Close"/> ends every
/// current and future wait with false.
/// </summary>
internal sealed class AsyncSignal : IValueTaskSource<bool>
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private readonly object _gate = new();
    private bool _set;
    private bool _waiting;
    private bool _closed;

    public bool IsClosed { get { lock (_gate) return _closed; } }

    public void Set()
    {
        lock (_gate)
        {
            if (_waiting)
            {
                _waiting = false;
                _core.SetResult(true);
            }
            else _set = true;
        }
    }

    public void Close()
    {
        lock (_gate)
        {
            _closed = true;
            if (_waiting)
            {
                _waiting = false;
                _core.SetResult(false);
            }
        }
    }

    /// <summary>Completes with true when set, false once closed. Only one caller may wait at a time.</summary>
    public ValueTask<bool> WaitAsync()
    {
        lock (_gate)
        {
            if (_closed) return new ValueTask<bool>(false);
            if (_set)
            {
                _set = false;
                return new ValueTask<bool>(true);
            }
            if (_waiting) throw new InvalidOperationException("AsyncSignal supports one waiter");
            _core.Reset();
            _waiting = true;
            return new ValueTask<bool>(this, _core.Version);
        }
    }

    bool IValueTaskSource<bool>.GetResult(short token) => _core.GetResult(token);
    ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _core.GetStatus(token);
    void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}
