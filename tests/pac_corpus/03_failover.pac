// Two data-centre proxies with a last-resort DIRECT, and a per-region ordering.
function FindProxyForURL(url, host) {
    if (dnsDomainIs(host, ".emea.example"))
        return "PROXY proxy-ams.corp.example:8080; PROXY proxy-fra.corp.example:8080; DIRECT";
    if (dnsDomainIs(host, ".amer.example"))
        return "PROXY proxy-nyc.corp.example:8080; PROXY proxy-dal.corp.example:8080; DIRECT";
    if (dnsDomainIs(host, ".partner.example"))
        return "PROXY partner-gw.corp.example:3128";
    return "PROXY proxy-a.corp.example:1; PROXY proxy-b.corp.example:2; DIRECT";
}
