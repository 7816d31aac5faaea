using System.Text.Json;

namespace XenIo.VSwitch.Management;

/// <summary>A mirror's settings as JSON, the same in netback's API and in <c>xenio switch list-mirrors --json</c>.</summary>
public static class MirrorConfigJson
{
    /// <summary>Writes the settings as properties of the object being written.</summary>
    public static void WriteFields(Utf8JsonWriter w, MirrorConfig m)
    {
        w.WriteString("name", m.Name);
        w.WriteString("file", m.File);
        w.WriteStartArray("ports");
        foreach (var p in m.Ports) w.WriteStringValue(p);
        w.WriteEndArray();
        w.WriteString("directions", SwitchConfigMapping.DirectionsText(m.Directions));
        if (m.Vlans is not null) w.WriteString("vlans", m.Vlans);
        if (m.Filter is not null) w.WriteString("filter", m.Filter);
        w.WriteNumber("snaplen", m.Snaplen);
        w.WriteString("format", m.PcapNg ? "pcapng" : "pcap");
    }
}
