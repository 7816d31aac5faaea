using System.Runtime.InteropServices;
using PacketDotNet;
using SharpPcap.LibPcap;

namespace XenIo.VSwitch.Capture;

/// <summary>
/// A tcpdump-syntax filter compiled by libpcap (through SharpPcap's BpfProgram for LINKTYPE_ETHERNET) and
/// run with pcap_offline_filter on each frame as it is on the port, VLAN tag included (so <c>vlan 10</c>
/// matches). The pcap_pkthdr it needs is allocated once here: SharpPcap's span overload allocates native
/// memory per call. Not thread-safe; a mirror calls it under its bridge's lock.
/// </summary>
public sealed unsafe class BpfFilter : IDisposable
{
    // struct pcap_pkthdr { struct timeval ts; bpf_u_int32 caplen; bpf_u_int32 len; } on 64-bit Linux.
    private const int HeaderSize = 24;
    private const int CaplenOffset = 16;
    private const int LenOffset = 20;
    private readonly BpfProgram _program;
    private byte* _header;

    private BpfFilter(string expression, BpfProgram program)
    {
        Expression = expression;
        _program = program;
        _header = (byte*)NativeMemory.AllocZeroed(HeaderSize);
    }

    public string Expression { get; }

    /// <summary>Compiles <paramref name="expression"/>; throws <see cref="ArgumentException"/> with libpcap's complaint when it is not valid.</summary>
    public static BpfFilter Compile(string expression)
    {
        ArgumentNullException.ThrowIfNull(expression);
        BpfProgram? program;
        try
        {
            program = BpfProgram.TryCreate(LinkLayers.Ethernet, expression, 1, 0);
        }
        catch (DllNotFoundException e)
        {
            throw new InvalidOperationException("capture filters need libpcap (Debian: libpcap0.8)", e);
        }
        if (program is null || program.IsInvalid) throw new ArgumentException($"invalid capture filter '{expression}'", nameof(expression));
        return new BpfFilter(expression, program);
    }

    public bool Matches(ReadOnlySpan<byte> frame)
    {
        ObjectDisposedException.ThrowIf(_header is null, this);
        *(uint*)(_header + CaplenOffset) = (uint)frame.Length;
        *(uint*)(_header + LenOffset) = (uint)frame.Length;
        fixed (byte* data = frame)
        {
            return _program.Matches((nint)_header, (nint)data);
        }
    }

    public void Dispose()
    {
        if (_header is null) return;
        NativeMemory.Free(_header);
        _header = null;
        _program.Dispose();
    }
}
