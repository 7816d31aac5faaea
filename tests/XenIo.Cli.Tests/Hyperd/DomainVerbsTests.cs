using XenIo.Cli.Verbs;
using XenIo.Hypervisor.Domains.Hyperd;
using Xunit;

namespace XenIo.Cli.Tests.Hyperd;

/// <summary>The domain verbs' own logic: xl list's table and xl's memory sizes.</summary>
public class DomainVerbsTests
{
    [Fact]
    public void List_prints_xls_columns_and_state_flags()
    {
        var table = DomainVerbs.Table(
        [
            new DomainInfo { Name = "web", Domid = 1, MemoryMiB = 128, Vcpus = 2, State = DomainState.Running, TimeSeconds = 12.34 },
            new DomainInfo { Name = "db", Domid = 12, MemoryMiB = 512, Vcpus = 1, State = DomainState.Paused, ConsolePort = 4000 },
        ]).Split('\n');
        Assert.Equal(3, table.Length);
        Assert.Equal(["Name", "ID", "Mem", "VCPUs", "State", "Time(s)", "Console"], table[0].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["web", "1", "128", "2", "r-----", "12.3", "-"], table[1].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(["db", "12", "512", "1", "--p---", "0.0", "4000"], table[2].Split(' ', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(table[0].Length, table[2].Length);
        Assert.Equal(table[0].IndexOf("State", StringComparison.Ordinal) + 5, table[1].IndexOf("r-----", StringComparison.Ordinal) + 6);
        Assert.Equal("----c-", DomainVerbs.StateFlags(DomainState.Crashed));
        Assert.Equal("---s--", DomainVerbs.StateFlags(DomainState.Shutdown));
    }

    [Theory]
    [InlineData("256", 256)]
    [InlineData("256m", 256)]
    [InlineData("2g", 2048)]
    [InlineData("2G", 2048)]
    [InlineData("524288k", 512)]
    public void Mem_set_sizes_are_xls(string text, long mib)
    {
        Assert.True(DomainVerbs.TryMiB(text, out var got));
        Assert.Equal(mib, got);
    }

    [Theory]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("-5")]
    [InlineData("12x")]
    [InlineData("512k")]
    [InlineData("99999999999999999999")]
    public void Bad_sizes_are_refused(string text) => Assert.False(DomainVerbs.TryMiB(text, out _));
}
