// Short names and their FQDNs stay inside; localHostOrDomainIs for the well-known servers.
function FindProxyForURL(url, host) {
    if (localHostOrDomainIs(host, "wiki.corp.example") ||
        localHostOrDomainIs(host, "jira.corp.example") ||
        localHostOrDomainIs(host, "intranet.corp.example"))
        return "DIRECT";
    if (isPlainHostName(host))
        return "DIRECT";
    if (host == "localhost" || shExpMatch(host, "127.*"))
        return "DIRECT";
    return "PROXY proxy.corp.example:8080";
}
