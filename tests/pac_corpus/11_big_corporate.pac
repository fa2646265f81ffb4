// Large corporate PAC (about 200 lines): long bypass lists, partner routes, network ranges, M365
// breakout and a failover default. Also the input of benches/pac_eval.rs.
var directDomains = [
    ".app00.corp.example", ".app01.corp.example", ".app02.corp.example", ".app03.corp.example",
    ".app04.corp.example", ".app05.corp.example", ".app06.corp.example", ".app07.corp.example",
    ".app08.corp.example", ".app09.corp.example", ".app10.corp.example", ".app11.corp.example",
    ".app12.corp.example", ".app13.corp.example", ".app14.corp.example", ".app15.corp.example",
    ".app16.corp.example", ".app17.corp.example", ".app18.corp.example", ".app19.corp.example",
    ".app20.corp.example", ".app21.corp.example", ".app22.corp.example", ".app23.corp.example",
    ".app24.corp.example", ".app25.corp.example", ".app26.corp.example", ".app27.corp.example",
    ".app28.corp.example", ".app29.corp.example", ".app30.corp.example", ".app31.corp.example",
    ".app32.corp.example", ".app33.corp.example", ".app34.corp.example", ".app35.corp.example",
    ".app36.corp.example", ".app37.corp.example", ".app38.corp.example", ".app39.corp.example",
    ".intra.example", ".lab.example", ".corp.example"
];
var directPatterns = [
    "*.svc00.example", "*.svc01.example", "*.svc02.example",
    "*.svc03.example", "*.svc04.example", "*.svc05.example",
    "*.svc06.example", "*.svc07.example", "*.svc08.example",
    "*.svc09.example", "*.svc10.example", "*.svc11.example",
    "*.svc12.example", "*.svc13.example", "*.svc14.example",
    "*.svc15.example", "*.svc16.example", "*.svc17.example",
    "*.svc18.example", "*.svc19.example", "*.svc20.example",
    "*.svc21.example", "*.svc22.example", "*.svc23.example",
    "*.svc24.example", "*.svc25.example", "*.svc26.example",
    "*.svc27.example", "*.svc28.example", "*.svc29.example",
    "*.internal", "*.local"
];
var partnerRoutes = {
    "partner00.example": "PROXY partner-gw0.corp.example:3128",
    "partner01.example": "PROXY partner-gw1.corp.example:3128",
    "partner02.example": "PROXY partner-gw2.corp.example:3128",
    "partner03.example": "PROXY partner-gw0.corp.example:3128",
    "partner04.example": "PROXY partner-gw1.corp.example:3128",
    "partner05.example": "PROXY partner-gw2.corp.example:3128",
    "partner06.example": "PROXY partner-gw0.corp.example:3128",
    "partner07.example": "PROXY partner-gw1.corp.example:3128",
    "partner08.example": "PROXY partner-gw2.corp.example:3128",
    "partner09.example": "PROXY partner-gw0.corp.example:3128",
    "partner10.example": "PROXY partner-gw1.corp.example:3128",
    "partner11.example": "PROXY partner-gw2.corp.example:3128",
    "partner12.example": "PROXY partner-gw0.corp.example:3128",
    "partner13.example": "PROXY partner-gw1.corp.example:3128",
    "partner14.example": "PROXY partner-gw2.corp.example:3128",
    "partner15.example": "PROXY partner-gw0.corp.example:3128",
    "partner16.example": "PROXY partner-gw1.corp.example:3128",
    "partner17.example": "PROXY partner-gw2.corp.example:3128",
    "partner18.example": "PROXY partner-gw0.corp.example:3128",
    "partner19.example": "PROXY partner-gw1.corp.example:3128",
    "partner20.example": "PROXY partner-gw2.corp.example:3128",
    "partner21.example": "PROXY partner-gw0.corp.example:3128",
    "partner22.example": "PROXY partner-gw1.corp.example:3128",
    "partner23.example": "PROXY partner-gw2.corp.example:3128",
    "partner24.example": "PROXY partner-gw0.corp.example:3128",
    "last-partner.example": "PROXY partner-gw0.corp.example:3128"
};
var privateNets = [
    ["10.0.0.0", "255.0.0.0"],
    ["172.16.0.0", "255.240.0.0"],
    ["192.168.0.0", "255.255.0.0"],
    ["100.64.0.0", "255.192.0.0"],
    ["198.18.0.0", "255.255.240.0"],
    ["198.18.16.0", "255.255.240.0"],
    ["198.18.32.0", "255.255.240.0"],
    ["198.18.48.0", "255.255.240.0"],
    ["198.18.64.0", "255.255.240.0"],
    ["198.18.80.0", "255.255.240.0"],
    ["198.18.96.0", "255.255.240.0"],
    ["198.18.112.0", "255.255.240.0"],
    ["198.18.128.0", "255.255.240.0"],
    ["198.18.144.0", "255.255.240.0"],
    ["198.18.160.0", "255.255.240.0"],
    ["198.18.176.0", "255.255.240.0"],
    ["198.18.192.0", "255.255.240.0"],
    ["198.18.208.0", "255.255.240.0"],
    ["198.18.224.0", "255.255.240.0"],
    ["198.18.240.0", "255.255.240.0"]
];
var blockedHosts = [
    "ads0.tracker.example", "ads1.tracker.example", "ads2.tracker.example", "ads3.tracker.example",
    "ads4.tracker.example", "ads5.tracker.example", "ads6.tracker.example", "ads7.tracker.example",
    "ads8.tracker.example", "ads9.tracker.example", "ads10.tracker.example", "ads11.tracker.example",
    "ads12.tracker.example", "ads13.tracker.example", "ads14.tracker.example", "ads15.tracker.example",
    "ads16.tracker.example", "ads17.tracker.example", "ads18.tracker.example", "ads19.tracker.example",
    "malware.example"
];

function inList(host, list) {
    for (var i = 0; i < list.length; i++) {
        if (dnsDomainIs(host, list[i]))
            return true;
    }
    return false;
}

function matchesPattern(host, list) {
    for (var i = 0; i < list.length; i++) {
        if (shExpMatch(host, list[i]))
            return true;
    }
    return false;
}

function isPrivateAddress(ip) {
    for (var i = 0; i < privateNets.length; i++) {
        if (isInNet(ip, privateNets[i][0], privateNets[i][1]))
            return true;
    }
    return false;
}

function isBlocked(host) {
    for (var i = 0; i < blockedHosts.length; i++) {
        if (host == blockedHosts[i])
            return true;
    }
    return false;
}

function FindProxyForURL(url, host) {
    host = host.toLowerCase();
    // 1. Local and plain names.
    if (isPlainHostName(host) || host == "localhost")
        return "DIRECT";
    // 2. IP literals: private ranges DIRECT.
    if (/^\d+\.\d+\.\d+\.\d+$/.test(host))
        return isPrivateAddress(host) ? "DIRECT" : "PROXY proxy-a.corp.example:8080; PROXY proxy-b.corp.example:8080";
    // 3. Sinkhole for blocked hosts (a proxy that answers 403).
    if (isBlocked(host))
        return "PROXY sinkhole.corp.example:9999";
    // 4. Internal domains and service patterns.
    if (inList(host, directDomains) || matchesPattern(host, directPatterns))
        return "DIRECT";
    // 5. Partners through their gateways.
    if (partnerRoutes.hasOwnProperty(host))
        return partnerRoutes[host];
    // 6. Microsoft 365 breakout.
    if (shExpMatch(host, "*.office365.com") || shExpMatch(host, "outlook.office.com") ||
        shExpMatch(host, "*.protection.outlook.com") || shExpMatch(host, "*.sharepoint.com"))
        return "DIRECT";
    if (shExpMatch(host, "login.microsoftonline.com") || shExpMatch(host, "*.msauth.net"))
        return "PROXY authproxy.corp.example:8080";
    // 7. Plain http through the scanning proxy.
    if (url.substring(0, 5) == "http:")
        return "PROXY scan.corp.example:8080; PROXY proxy-a.corp.example:8080";
    // 8. Default: two proxies, no DIRECT fallback.
    return "PROXY proxy-a.corp.example:8080; PROXY proxy-b.corp.example:8080";
}

// Legacy rule set 0: kept for reference by the network team.
function legacyRule0(url, host) {
    if (shExpMatch(host, "*.legacy0.example"))
        return "PROXY legacy0.corp.example:8080";
    return null;
}
// Legacy rule set 1: kept for reference by the network team.
function legacyRule1(url, host) {
    if (shExpMatch(host, "*.legacy1.example"))
        return "PROXY legacy1.corp.example:8080";
    return null;
}
// Legacy rule set 2: kept for reference by the network team.
function legacyRule2(url, host) {
    if (shExpMatch(host, "*.legacy2.example"))
        return "PROXY legacy2.corp.example:8080";
    return null;
}
// Legacy rule set 3: kept for reference by the network team.
function legacyRule3(url, host) {
    if (shExpMatch(host, "*.legacy3.example"))
        return "PROXY legacy3.corp.example:8080";
    return null;
}
// Legacy rule set 4: kept for reference by the network team.
function legacyRule4(url, host) {
    if (shExpMatch(host, "*.legacy4.example"))
        return "PROXY legacy4.corp.example:8080";
    return null;
}
// Legacy rule set 5: kept for reference by the network team.
function legacyRule5(url, host) {
    if (shExpMatch(host, "*.legacy5.example"))
        return "PROXY legacy5.corp.example:8080";
    return null;
}
// Legacy rule set 6: kept for reference by the network team.
function legacyRule6(url, host) {
    if (shExpMatch(host, "*.legacy6.example"))
        return "PROXY legacy6.corp.example:8080";
    return null;
}
// Legacy rule set 7: kept for reference by the network team.
function legacyRule7(url, host) {
    if (shExpMatch(host, "*.legacy7.example"))
        return "PROXY legacy7.corp.example:8080";
    return null;
}
// Legacy rule set 8: kept for reference by the network team.
function legacyRule8(url, host) {
    if (shExpMatch(host, "*.legacy8.example"))
        return "PROXY legacy8.corp.example:8080";
    return null;
}
// Legacy rule set 9: kept for reference by the network team.
function legacyRule9(url, host) {
    if (shExpMatch(host, "*.legacy9.example"))
        return "PROXY legacy9.corp.example:8080";
    return null;
}
// Legacy rule set 10: kept for reference by the network team.
function legacyRule10(url, host) {
    if (shExpMatch(host, "*.legacy10.example"))
        return "PROXY legacy10.corp.example:8080";
    return null;
}
// Legacy rule set 11: kept for reference by the network team.
function legacyRule11(url, host) {
    if (shExpMatch(host, "*.legacy11.example"))
        return "PROXY legacy11.corp.example:8080";
    return null;
}
