// PAC helper functions (Netscape set plus the Microsoft IPv6-aware "Ex" set), after pacparser's
// pac_utils.js / Mozilla's nsProxyAutoConfig.js and MS Learn "IPv6-Aware Proxy Helper API Definitions".
// `N` holds the natives installed by engine.rs; it is reachable only through these closures.
// Deliberate differences from pacparser: weekdayRange, dateRange and timeRange wrap around when the
// start is after the end (FRI..MON, DEC..JAN, 22..6), as Chrome and Firefox do; the clock is injected.
(function (N) {
  "use strict";
  var G = globalThis;
  var WEEKDAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
  var MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];

  G.isPlainHostName = function (host) { return String(host).indexOf(".") === -1; };
  G.dnsDomainIs = function (host, domain) {
    host = String(host); domain = String(domain);
    return host.length >= domain.length && host.substring(host.length - domain.length) === domain;
  };
  G.localHostOrDomainIs = function (host, hostdom) {
    host = String(host); hostdom = String(hostdom);
    return host === hostdom || hostdom.lastIndexOf(host + ".", 0) === 0;
  };
  G.dnsResolve = function (host) { var ip = N.dnsResolve(String(host)); return ip === "" ? null : ip; };
  G.isResolvable = function (host) { return G.dnsResolve(host) !== null; };
  G.convert_addr = function (ipchars) {
    var bytes = String(ipchars).split(".");
    return ((bytes[0] & 0xff) << 24) | ((bytes[1] & 0xff) << 16) | ((bytes[2] & 0xff) << 8) | (bytes[3] & 0xff);
  };
  G.isInNet = function (ipaddr, pattern, maskstr) {
    ipaddr = String(ipaddr);
    var test = /^(\d{1,4})\.(\d{1,4})\.(\d{1,4})\.(\d{1,4})$/.exec(ipaddr);
    if (test === null) {
      ipaddr = G.dnsResolve(ipaddr);
      if (ipaddr === null) return false;
    } else if (test[1] > 255 || test[2] > 255 || test[3] > 255 || test[4] > 255) {
      return false;
    }
    var host = G.convert_addr(ipaddr), pat = G.convert_addr(pattern), mask = G.convert_addr(maskstr);
    return (host & mask) === (pat & mask);
  };
  G.myIpAddress = function () { return N.myIpAddress(); };
  G.dnsDomainLevels = function (host) { return String(host).split(".").length - 1; };
  G.shExpMatch = function (str, shexp) { return N.shExpMatch(String(str), String(shexp)); };
  G.alert = function (msg) { N.alert(String(msg)); };

  G.isResolvableEx = function (host) { return N.dnsResolveEx(String(host)) !== ""; };
  G.isInNetEx = function (ipaddr, prefix) { return N.isInNetEx(String(ipaddr), String(prefix)); };
  G.dnsResolveEx = function (host) { return N.dnsResolveEx(String(host)); };
  G.myIpAddressEx = function () { return N.myIpAddressEx(); };
  G.sortIpAddressList = function (list) { return N.sortIpAddressList(String(list)); };
  G.getClientVersion = function () { return "1.0"; };

  // Wall-clock fields of "now" in local time (injected offset, or the host zone) or in GMT.
  function now(args) {
    var gmt = args.length > 0 && args[args.length - 1] === "GMT";
    var ms = N.now();
    var offset = gmt ? 0 : N.utcOffsetMinutes();
    if (offset === null || offset === undefined) offset = -new Date(ms).getTimezoneOffset();
    var d = new Date(ms + offset * 60000);
    return {
      gmt: gmt, year: d.getUTCFullYear(), month: d.getUTCMonth(), day: d.getUTCDate(),
      wday: d.getUTCDay(), hour: d.getUTCHours(), min: d.getUTCMinutes(), sec: d.getUTCSeconds()
    };
  }
  function argList(args, gmt) {
    var list = Array.prototype.slice.call(args);
    if (gmt) list.pop();
    return list;
  }
  function inRange(lo, x, hi) { return lo <= hi ? lo <= x && x <= hi : x >= lo || x <= hi; }

  G.weekdayRange = function () {
    var t = now(arguments), a = argList(arguments, t.gmt);
    if (a.length < 1 || a.length > 2) return false;
    var wd1 = WEEKDAYS.indexOf(String(a[0]).toUpperCase());
    var wd2 = a.length === 2 ? WEEKDAYS.indexOf(String(a[1]).toUpperCase()) : wd1;
    return wd1 !== -1 && wd2 !== -1 && inRange(wd1, t.wday, wd2);
  };

  // One dateRange bound: which of day/month/year it names, and their values.
  function dateBound(parts) {
    var b = { day: null, month: null, year: null };
    for (var i = 0; i < parts.length; i++) {
      var p = parts[i], n = parseInt(p, 10);
      if (isNaN(n)) {
        var m = MONTHS.indexOf(String(p).toUpperCase());
        if (m === -1 || b.month !== null) return null;
        b.month = m;
      } else if (n >= 1 && n <= 31 && b.day === null && b.year === null && b.month === null) {
        b.day = n;
      } else if (n > 31 && b.year === null) {
        b.year = n;
      } else {
        return null;
      }
    }
    return b;
  }
  function dateKey(b, t) {
    return (b.year === null ? 0 : t.year * 10000) + (b.month === null ? 0 : t.month * 100) + (b.day === null ? 0 : t.day);
  }
  function boundKey(b) {
    return (b.year === null ? 0 : b.year * 10000) + (b.month === null ? 0 : b.month * 100) + (b.day === null ? 0 : b.day);
  }
  G.dateRange = function () {
    var t = now(arguments), a = argList(arguments, t.gmt);
    if (a.length < 1 || a.length > 6 || (a.length > 1 && a.length % 2 === 1)) return false;
    var half = a.length === 1 ? 1 : a.length / 2;
    var lo = dateBound(a.slice(0, half)), hi = a.length === 1 ? lo : dateBound(a.slice(half));
    if (lo === null || hi === null) return false;
    if ((lo.day === null) !== (hi.day === null) || (lo.month === null) !== (hi.month === null) ||
        (lo.year === null) !== (hi.year === null)) return false;
    return inRange(boundKey(lo), dateKey(lo, t), boundKey(hi));
  };

  G.timeRange = function () {
    var t = now(arguments), a = argList(arguments, t.gmt), n = [];
    for (var i = 0; i < a.length; i++) n.push(parseInt(a[i], 10));
    var x = t.hour * 3600 + t.min * 60 + t.sec;
    switch (n.length) {
      case 1: return t.hour === n[0];
      case 2: return inRange(n[0] * 3600, x, n[1] * 3600 + 3599);
      case 4: return inRange(n[0] * 3600 + n[1] * 60, x, n[2] * 3600 + n[3] * 60 + 59);
      case 6: return inRange(n[0] * 3600 + n[1] * 60 + n[2], x, n[3] * 3600 + n[4] * 60 + n[5]);
      default: throw new Error("timeRange: bad number of arguments");
    }
  };
})(globalThis.__pac_natives);
delete globalThis.__pac_natives;
