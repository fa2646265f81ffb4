// Microsoft 365 "Optimize" endpoints DIRECT (local breakout), login via the authenticated proxy,
// everything else via the cloud proxy.
var m365Direct = [
    "outlook.office365.com", "outlook.office.com", "*.outlook.office.com",
    "ps.compliance.protection.outlook.com", "*.ps.compliance.protection.outlook.com",
    "*.protection.outlook.com", "*.sharepoint.com", "*.lync.com", "*.teams.microsoft.com"
];
var m365Login = ["login.microsoftonline.com", "login.windows.net", "*.msftauth.net"];

function matchesAny(host, list) {
    for (var i = 0; i < list.length; i++)
        if (shExpMatch(host, list[i]))
            return true;
    return false;
}

function FindProxyForURL(url, host) {
    host = host.toLowerCase();
    if (matchesAny(host, m365Direct))
        return "DIRECT";
    if (matchesAny(host, m365Login))
        return "PROXY authproxy.corp.example:8080; PROXY cloudproxy.corp.example:80";
    if (url.substring(0, 5) == "http:")
        return "PROXY cloudproxy.corp.example:80";
    return "PROXY cloudproxy.corp.example:80; DIRECT";
}
