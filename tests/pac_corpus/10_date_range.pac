// Maintenance window: in December traffic goes through the standby proxy; on the 1st of a month the
// report server is reached DIRECT.
function FindProxyForURL(url, host) {
    if (host == "reports.corp.example")
        return dateRange(1) ? "DIRECT" : "PROXY proxy.corp.example:8080";
    if (dateRange("DEC"))
        return "PROXY standby.corp.example:8080";
    if (dateRange("JUN", "AUG"))
        return "PROXY summer.corp.example:8080; PROXY proxy.corp.example:8080";
    if (dateRange(2026, 2027) && dnsDomainLevels(host) > 2)
        return "PROXY deep.corp.example:8080";
    return "PROXY proxy.corp.example:8080";
}
