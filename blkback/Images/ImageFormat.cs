using System.Buffers.Binary;

namespace XenIo.Blkback.Images;

/// <summary>Disk image formats xl.cfg can name. Only <see cref="Raw"/> is served; the rest are recognised to be refused by name.</summary>
public enum ImageFormat
{
    Raw,
    Qcow,
    Qcow2,
    Vhd,
    Vhdx,
    Qed,
    Vmdk,
}

/// <summary>Recognises image formats by their magic, so a qcow2 file configured as raw is not handed to a guest as a disk.</summary>
public static class ImageFormatProbe
{
    /// <summary>Bytes <see cref="Detect"/> wants from the start of the file.</summary>
    public const int HeaderBytes = 512;

    /// <summary>
    /// The format named by the first bytes of a file (<paramref name="head"/>) and its last 512 bytes
    /// (<paramref name="tail"/>, where a fixed VHD keeps its footer); <see cref="ImageFormat.Raw"/> when none matches.
    /// </summary>
    public static ImageFormat Detect(ReadOnlySpan<byte> head, ReadOnlySpan<byte> tail)
    {
        if (head.Length >= 8 && head[..4].SequenceEqual(QcowMagic))
        {
            uint version = BinaryPrimitives.ReadUInt32BigEndian(head.Slice(4, 4));
            return version == 1 ? ImageFormat.Qcow : ImageFormat.Qcow2;
        }
        if (head.Length >= 4 && head[..4].SequenceEqual("QED\0"u8)) return ImageFormat.Qed;
        if (head.Length >= 8 && head[..8].SequenceEqual("vhdxfile"u8)) return ImageFormat.Vhdx;
        if (head.Length >= 8 && head[..8].SequenceEqual("conectix"u8)) return ImageFormat.Vhd;
        if (head.Length >= 4 && head[..4].SequenceEqual("KDMV"u8)) return ImageFormat.Vmdk;
        if (head.Length >= 21 && head[..21].SequenceEqual("# Disk DescriptorFile"u8)) return ImageFormat.Vmdk;
        if (tail.Length >= 512 && tail[..8].SequenceEqual("conectix"u8)) return ImageFormat.Vhd;
        return ImageFormat.Raw;
    }

    /// <summary>Parses an xl.cfg <c>format=</c> value (case-insensitive); null when unknown.</summary>
    public static ImageFormat? Parse(string? name) => name?.Trim().ToLowerInvariant() switch
    {
        null or "" or "raw" => ImageFormat.Raw,
        "qcow" => ImageFormat.Qcow,
        "qcow2" => ImageFormat.Qcow2,
        "vhd" => ImageFormat.Vhd,
        "vhdx" => ImageFormat.Vhdx,
        "qed" => ImageFormat.Qed,
        "vmdk" => ImageFormat.Vmdk,
        _ => null,
    };

    public static string Name(ImageFormat format) => format.ToString().ToLowerInvariant();

    // "QFI" 0xFB: written as bytes because a u8 string literal cannot hold 0xFB.
    private static ReadOnlySpan<byte> QcowMagic => [(byte)'Q', (byte)'F', (byte)'I', 0xFB];
}
