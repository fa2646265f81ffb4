// Classic corporate bypass list: intranet names and domains DIRECT, everything else via the proxies.
function FindProxyForURL(url, host) {
    host = host.toLowerCase();
    if (isPlainHostName(host))
        return "DIRECT";
    if (dnsDomainIs(host, ".corp.example") ||
        dnsDomainIs(host, ".intra.example") ||
        host == "corp.example")
        return "DIRECT";
    if (shExpMatch(host, "*.local") || shExpMatch(host, "10.*") || shExpMatch(host, "192.168.*"))
        return "DIRECT";
    if (shExpMatch(url, "http://update.vendor.example/*"))
        return "PROXY updates.corp.example:3128";
    return "PROXY proxy1.corp.example:8080; PROXY proxy2.corp.example:8080";
}
