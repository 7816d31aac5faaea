using System.Text.Json;
using XenIo.Cli.Verbs;
using Xunit;

namespace XenIo.Cli.Tests.Switch;

/// <summary>The text listings of <c>xenio switch …</c>, from the JSON netback answers.</summary>
public sealed class SwitchListingTests
{
    [Fact]
    public void The_fdb_table_keeps_its_columns_aligned_with_15_character_port_names()
    {
        using var doc = JsonDocument.Parse("""
            {"bridge":"br0","entries":[
              {"mac":"00:16:3e:00:00:01","vlan":0,"port":"t0","static":false,"age_seconds":5},
              {"mac":"00:16:3e:00:00:02","vlan":4094,"port":"abcdefghijklmno","static":false,"age_seconds":120},
              {"mac":"00:16:3e:00:00:03","vlan":10,"port":"vif12.0","static":true,"age_seconds":0}],
             "tunnel_entries":[{"mac":"00:16:3e:00:00:04","port":"vx0","remote":"198.18.0.2:4789","vni":42,"age_seconds":7}]}
            """);
        var lines = SwitchVerb.FdbTable(doc.RootElement).TrimEnd('\n').Split('\n');
        var header = lines[0];
        Assert.StartsWith("port", header.TrimStart());
        int vlanEnd = header.IndexOf("VLAN", StringComparison.Ordinal) + 4, mac = header.IndexOf("MAC", StringComparison.Ordinal), age = header.IndexOf("Age", StringComparison.Ordinal);
        var rows = new[] { ("t0", "0", "00:16:3e:00:00:01", "5"), ("abcdefghijklmno", "4094", "00:16:3e:00:00:02", "120"), ("vif12.0", "10", "00:16:3e:00:00:03", "static") };
        for (var i = 0; i < rows.Length; i++)
        {
            var (port, vlan, address, ageText) = rows[i];
            var line = lines[i + 1];
            // Each field at its header's offset: names from the left, the VLAN right-aligned under VLAN.
            Assert.Equal(port, line[..line.IndexOf(' ')]);
            Assert.Equal(vlan, line[(vlanEnd - vlan.Length)..vlanEnd]);
            Assert.Equal(' ', line[vlanEnd - vlan.Length - 1]);
            Assert.Equal(address, line.Substring(mac, address.Length));
            Assert.Equal(ageText, line[age..]);
        }
        Assert.Equal("00:16:3e:00:00:04 dev vx0 dst 198.18.0.2:4789 vni 42 age 7", lines[4]);
    }
}
