using System.Buffers.Binary;
using System.Net.Sockets;
using XenIo.Hypervisor.Daemons;
using XenIo.Hypervisor.Interop;

namespace XenIo.Hypervisor.Domains;

/// <summary>The descriptors a domain's process holds: its memory and its hypercall connection.</summary>
public readonly record struct GuestDescriptors(ushort Domid, int MemoryFd, int HypercallFd);

/// <summary>
/// Hands a domain's descriptors (memory memfd, guest end of the hypercall connection) to another
/// process over a one-shot Unix socket with SCM_RIGHTS, the way a harness or agent launcher takes a
/// domain without hyperd starting its agent. The socket is created 0600 and removed after use.
/// </summary>
public static class DomainHandoff
{
    private const uint Magic = 0x31484458; // "XDH1"
    private const int MessageSize = 8;

    /// <summary>Waits for one process to connect to <paramref name="socketPath"/> and gives it the domain.</summary>
    public static async Task HandOffAsync(HostedDomain domain, string socketPath, CancellationToken cancellationToken = default)
    {
        using var listener = ListeningSocket.Unix(socketPath, UnixFileMode.UserRead | UnixFileMode.UserWrite, backlog: 1, SocketType.Seqpacket);
        try
        {
            using var connection = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            Send((int)connection.Handle, domain);
        }
        finally
        {
            File.Delete(socketPath);
        }
    }

    /// <summary>Sends the domain's descriptors on a connected socket; hyperd's copy of the guest end is closed afterwards.</summary>
    public static void Send(int socketFd, HostedDomain domain)
    {
        Span<byte> message = stackalloc byte[MessageSize];
        BinaryPrimitives.WriteUInt32LittleEndian(message, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(message[4..], domain.Domid);
        BinaryPrimitives.WriteUInt16LittleEndian(message[6..], 0);
        using var guestEnd = domain.TakeGuestEnd();
        Span<int> fds = [(int)domain.Memory.Handle.DangerousGetHandle(), (int)guestEnd.DangerousGetHandle()];
        nint sent = Libc.SendWithDescriptors(socketFd, message, fds, 0);
        if (sent != MessageSize) throw new IOException($"domain hand-off failed: {(sent < 0 ? Libc.Describe((int)-sent) : "short send")}");
    }

    /// <summary>Connects to a hand-off socket and receives a domain's descriptors (owned by the caller).</summary>
    public static GuestDescriptors Receive(string socketPath)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Seqpacket, ProtocolType.Unspecified);
        socket.Connect(new UnixDomainSocketEndPoint(socketPath));
        return Receive((int)socket.Handle);
    }

    public static GuestDescriptors Receive(int socketFd)
    {
        Span<byte> message = stackalloc byte[MessageSize + 1];
        Span<int> fds = stackalloc int[2];
        nint n = Libc.ReceiveWithDescriptors(socketFd, message, fds, out int count, out bool truncated, 0);
        if (n != MessageSize || truncated || count != 2 || BinaryPrimitives.ReadUInt32LittleEndian(message) != Magic)
        {
            for (int i = 0; i < count; i++) Libc.close(fds[i]);
            throw new InvalidDataException("malformed domain hand-off");
        }
        return new GuestDescriptors(BinaryPrimitives.ReadUInt16LittleEndian(message[4..]), fds[0], fds[1]);
    }
}
