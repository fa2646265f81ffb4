// Names that resolve internally go DIRECT, the rest through the proxy; deep names via the scanner.
function FindProxyForURL(url, host) {
    if (dnsDomainLevels(host) == 0)
        return "DIRECT";
    if (dnsDomainLevels(host) >= 4)
        return "PROXY scan.corp.example:8080";
    if (isResolvable(host) && isInNet(host, "10.0.0.0", "255.0.0.0"))
        return "DIRECT";
    return "PROXY proxy.corp.example:8080";
}
