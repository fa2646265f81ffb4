// Private ranges DIRECT by address; names resolved (internal DNS) then compared.
var privateNets = [
    ["10.0.0.0", "255.0.0.0"],
    ["172.16.0.0", "255.240.0.0"],
    ["192.168.0.0", "255.255.0.0"],
    ["127.0.0.0", "255.0.0.0"]
];

function inPrivateNet(ip) {
    for (var i = 0; i < privateNets.length; i++) {
        if (isInNet(ip, privateNets[i][0], privateNets[i][1]))
            return true;
    }
    return false;
}

function FindProxyForURL(url, host) {
    if (/^\d+\.\d+\.\d+\.\d+$/.test(host))
        return inPrivateNet(host) ? "DIRECT" : "PROXY proxy.corp.example:8080";
    var ip = dnsResolve(host);
    if (ip && inPrivateNet(ip))
        return "DIRECT";
    return "PROXY proxy.corp.example:8080";
}
