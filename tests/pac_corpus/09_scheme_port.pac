// Scheme- and port-specific rules: plain http scanned, https tunnelled, odd ports refused upstream.
function FindProxyForURL(url, host) {
    if (shExpMatch(url, "https://*:8443/*"))
        return "PROXY altport.corp.example:8443";
    if (url.substring(0, 6) == "https:")
        return "PROXY tls.corp.example:8080";
    if (url.substring(0, 5) == "http:") {
        if (shExpMatch(url, "*/downloads/*") || shExpMatch(url, "*.exe"))
            return "PROXY scan.corp.example:8080";
        return "PROXY web.corp.example:8080";
    }
    return "DIRECT";
}
