// Branch offices pick their local proxy from the client's own address.
function FindProxyForURL(url, host) {
    if (isPlainHostName(host) || dnsDomainIs(host, ".corp.example"))
        return "DIRECT";
    var me = myIpAddress();
    if (isInNet(me, "10.20.0.0", "255.255.0.0"))
        return "PROXY proxy-london.corp.example:8080; PROXY proxy-hq.corp.example:8080";
    if (isInNet(me, "10.30.0.0", "255.255.0.0"))
        return "PROXY proxy-paris.corp.example:8080; PROXY proxy-hq.corp.example:8080";
    if (isInNet(me, "192.168.0.0", "255.255.0.0"))
        return "DIRECT";
    return "PROXY proxy-hq.corp.example:8080";
}
