using XenIo.Net.Frames;
using Xunit;

namespace XenIo.Net.Tests.Net;

public class FrameMetadataTests
{
    /// <summary>HasOffload reads Checksum and Gso in one load: it must agree with asking each field, whatever else is set.</summary>
    [Fact]
    public void HasOffload_is_a_partial_checksum_or_a_gso_type()
    {
        foreach (var checksum in Enum.GetValues<ChecksumState>())
        {
            foreach (var gso in Enum.GetValues<GsoType>())
            {
                var metadata = new FrameMetadata
                {
                    Length = 1514, HasVlan = true, VlanTci = 0xFFFF, Checksum = checksum, Gso = gso,
                    CsumStart = 0xFFFF, CsumOffset = 0xFFFF, GsoSize = 0xFFFF, HeaderLength = 0xFFFF, IngressPort = -1,
                };
                Assert.Equal(checksum == ChecksumState.Partial || gso != GsoType.None, metadata.HasOffload);
            }
        }
    }
}
