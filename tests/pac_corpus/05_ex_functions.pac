// IPv6-aware script (Microsoft "Ex" helpers): preferred over FindProxyForURL when defined.
function FindProxyForURL(url, host) {
    return "PROXY legacy.corp.example:8080";
}

function FindProxyForURLEx(url, host) {
    if (isInNetEx(host, "2001:db8:100::/48") || isInNetEx(host, "10.0.0.0/8"))
        return "DIRECT";
    if (dnsDomainIs(host, ".v6only.example")) {
        var addrs = dnsResolveEx(host);
        if (addrs == "")
            return "PROXY proxy6.corp.example:8080";
        var first = sortIpAddressList(addrs).split(";")[0];
        return isInNetEx(first, "2001:db8:100::/48") ? "DIRECT" : "PROXY proxy6.corp.example:8080";
    }
    if (host == "version.check.example")
        return getClientVersion() == "1.0" ? "DIRECT" : "PROXY old.corp.example:1";
    if (isResolvableEx(host) && isInNetEx(host, "2001:db8::/32"))
        return "PROXY proxy6.corp.example:8080";
    return "PROXY proxy.corp.example:8080";
}
