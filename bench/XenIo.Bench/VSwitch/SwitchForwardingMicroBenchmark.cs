using BenchmarkDotNet.Attributes;

namespace XenIo.Bench.VSwitch;

/// <summary>
/// BenchmarkDotNet proof that the switch core forwards without allocating: one operation forwards the
/// 8,192-frame mix (1,024 MACs, 4 ports, 1 % broadcast); [MemoryDiagnoser] must report 0 B allocated.
/// </summary>
[MemoryDiagnoser]
public class SwitchForwardingMicroBenchmark
{
    private SwitchWorkload _workload = null!;

    [GlobalSetup]
    public void Setup() => _workload = new SwitchWorkload();

    [Benchmark(OperationsPerInvoke = 8192)]
    public void ForwardMix() => _workload.ForwardAll();

    [Benchmark(Baseline = true, OperationsPerInvoke = 8192)]
    public void CopyOnlyMix() => _workload.CopyAll();
}
