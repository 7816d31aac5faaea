using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging.Abstractions;
using XenIo.Consoled.Logs;
using Xunit;

namespace XenIo.Consoled.Tests;

public sealed class LogTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-console-log").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Plain_log_is_byte_exact()
    {
        var path = Path.Combine(_dir, ConsoleLogFile.FileNameFor("web"));
        var bytes = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
        using (var log = new ConsoleLogFile(path, new ConsoleLogOptions(), NullLogger.Instance))
        {
            log.Write(bytes);
        }
        Assert.Equal(bytes, File.ReadAllBytes(path));
        Assert.EndsWith("guest-web.log", path);
        if (!OperatingSystem.IsWindows()) Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead, File.GetUnixFileMode(path));
    }

    [Fact]
    public void Timestamps_start_each_line_even_across_writes()
    {
        var path = Path.Combine(_dir, "t.log");
        using (var log = new ConsoleLogFile(path, new ConsoleLogOptions { Timestamps = true }, NullLogger.Instance))
        {
            log.Write("boot\nlog"u8);
            log.Write("in: \n"u8);
            log.Write("\n"u8);
        }
        var lines = File.ReadAllText(path).Split('\n');
        Assert.Equal(4, lines.Length);
        var stamp = new Regex(@"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] ");
        Assert.Matches(stamp, lines[0]);
        Assert.EndsWith("] boot", lines[0]);
        Assert.EndsWith("] login: ", lines[1]);
        Assert.Matches(stamp, lines[2]);
        Assert.Equal("", lines[3]); // no stamp until the next line has a byte
    }

    [Fact]
    public void Escape_is_replaced_on_request()
    {
        var path = Path.Combine(_dir, "e.log");
        using (var log = new ConsoleLogFile(path, new ConsoleLogOptions { ReplaceEscape = true }, NullLogger.Instance))
        {
            log.Write("\u001b[2Jclear"u8);
        }
        Assert.Equal(".[2Jclear", File.ReadAllText(path));
    }

    [Fact]
    public void Log_rotates_at_the_cap_and_keeps_a_bounded_number_of_files()
    {
        var path = Path.Combine(_dir, "r.log");
        var options = new ConsoleLogOptions { MaxBytes = 1024, Rotations = 2 };
        using (var log = new ConsoleLogFile(path, options, NullLogger.Instance))
        {
            for (int i = 0; i < 10; i++) log.Write(Encoding.ASCII.GetBytes(new string((char)('a' + i), 600)));
        }
        Assert.True(File.Exists(path));
        Assert.True(File.Exists(path + ".1"));
        Assert.True(File.Exists(path + ".2"));
        Assert.False(File.Exists(path + ".3"));
        Assert.Equal(new string('j', 600), File.ReadAllText(path));
        Assert.Equal(new string('i', 600), File.ReadAllText(path + ".1"));
        foreach (var f in Directory.GetFiles(_dir, "r.log*")) Assert.True(new FileInfo(f).Length <= 1024);
    }

    [Theory]
    [InlineData("web", "guest-web.log")]
    [InlineData("../etc/passwd", "guest-_.._etc_passwd.log")]
    [InlineData(".hidden", "guest-_.hidden.log")]
    public void File_names_cannot_escape_the_directory(string name, string expected) =>
        Assert.Equal(expected, ConsoleLogFile.FileNameFor(name));
}
