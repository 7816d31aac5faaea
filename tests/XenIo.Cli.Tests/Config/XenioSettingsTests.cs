using XenIo.Cli.Config;
using Xunit;

namespace XenIo.Cli.Tests.Config;

/// <summary>Embedded defaults, xenio.json, XENIO_* variables, in that order; bad files named with line and column.</summary>
public sealed class XenioSettingsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("xenio-settings-").FullName;
    private readonly Dictionary<string, string> _env = [];

    private string? Env(string name) => _env.GetValueOrDefault(name);

    private string Write(string json)
    {
        var path = Path.Combine(_dir, "xenio.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void Without_a_file_the_embedded_defaults_apply()
    {
        _env["XENIO_CONFIG"] = "";
        var s = XenioSettings.Load(null, name => name == "XENIO_CONFIG" ? null : Env(name));
        if (File.Exists(XenioSettings.DefaultFile)) return; // this host has its own settings; the defaults are not observable
        Assert.Equal(("xenbr0", "/var/lib/xenio", "/etc/xenio/auto", 0, (string?)null), (s.DefaultBridge, s.StateDirectory, s.AutostartDirectory, s.ConsolePortBase, s.RunDirectory));
    }

    [Fact]
    public void The_file_overrides_the_defaults_and_variables_override_the_file()
    {
        var path = Write("""
            {
              // comments are allowed, as in appsettings
              "run_directory": "/tmp/x/run",
              "state_directory": "/tmp/x/state",
              "default_bridge": "br-lab",
              "console_port_base": 4000,
              "autostart_directory": "/tmp/x/auto",
            }
            """);
        var s = XenioSettings.Load(path, Env);
        Assert.Equal(("/tmp/x/run", "/tmp/x/state", "br-lab", 4000, "/tmp/x/auto"), (s.RunDirectory, s.StateDirectory, s.DefaultBridge, s.ConsolePortBase, s.AutostartDirectory));

        _env["XENIO_DEFAULT_BRIDGE"] = "br-env";
        _env["XENIO_CONSOLE_PORT_BASE"] = "5000";
        _env["XENIO_AUTOSTART_DIR"] = "/tmp/y/auto";
        var v = XenioSettings.Load(path, Env);
        Assert.Equal(("/tmp/x/run", "br-env", 5000, "/tmp/y/auto"), (v.RunDirectory, v.DefaultBridge, v.ConsolePortBase, v.AutostartDirectory));

        // XENIO_CONFIG names the file when --config does not.
        _env.Clear();
        _env["XENIO_CONFIG"] = path;
        Assert.Equal("br-lab", XenioSettings.Load(null, Env).DefaultBridge);
    }

    [Theory]
    [InlineData("{\n  \"default_bridge\": \"br0\",\n  \"bridge\": 1\n}", "xenio.json:3:")]
    [InlineData("{ \"console_port_base\": 70000 }", "console_port_base 70000")]
    [InlineData("{ \"default_bridge\": \"a-name-far-too-long\" }", "default_bridge")]
    [InlineData("{ \"state_directory\": \"relative/dir\" }", "must be an absolute path")]
    [InlineData("{ \"console_port_base\": \"x\" }", "xenio.json:1:")]
    public void Bad_settings_are_refused_with_where_and_why(string json, string expected)
    {
        var e = Assert.Throws<XenioSettingsException>(() => XenioSettings.Load(Write(json), Env));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_named_file_that_is_missing_is_an_error_and_bad_variables_too()
    {
        Assert.Contains("cannot read", Assert.Throws<XenioSettingsException>(() => XenioSettings.Load(Path.Combine(_dir, "none.json"), Env)).Message);
        _env["XENIO_CONSOLE_PORT_BASE"] = "many";
        Assert.Contains("XENIO_CONSOLE_PORT_BASE", Assert.Throws<XenioSettingsException>(() => XenioSettings.Load(Write("{}"), Env)).Message);
    }

    [Fact]
    public void The_default_bridge_reaches_vifs_that_name_none()
    {
        var (config, _) = DomainConfigReader.Parse("name='a'\nvif=['mac=00:16:3e:00:00:01', 'bridge=xenbr0']\n", "a.cfg", null, "br-lab");
        Assert.Equal(["br-lab", "xenbr0"], config.Vifs.Select(v => v.Bridge));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
