// consoled serves Linux hosts: /proc/net/tcp, Unix file modes, glibc's name service.
[assembly: System.Runtime.Versioning.SupportedOSPlatform("linux")]
