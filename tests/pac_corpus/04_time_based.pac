// Office hours go through the filtering proxy; nights and weekends through the bulk proxy.
function FindProxyForURL(url, host) {
    if (isPlainHostName(host) || dnsDomainIs(host, ".corp.example"))
        return "DIRECT";
    if (weekdayRange("SAT", "SUN"))
        return "PROXY bulk.corp.example:3128";
    if (timeRange(8, 17))
        return "PROXY filter.corp.example:8080";
    if (timeRange(22, 5))
        return "PROXY night.corp.example:3128";
    return "PROXY bulk.corp.example:3128";
}
