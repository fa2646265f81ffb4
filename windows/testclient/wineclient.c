/*
 * Windows test client for scripts/wine-tests.sh: the clients of exoproxy's Wine stage must be Windows
 * processes, because exoproxy's same-user check asks Windows for the owner of the client's socket
 * (a Linux-native client is no process at all to Wine). Built with mingw from this source; test-only.
 *
 *   wineclient tunnel PROXY_PORT HOST:PORT [HOLD_MS]
 *       Winsock: CONNECT HOST:PORT through 127.0.0.1:PROXY_PORT, expect 200, send "ping\n" through
 *       the tunnel and expect it echoed. Prints "tunnel ok" or the failure, exit 0/1. With HOLD_MS it
 *       prints "connected" after the 200 and waits that long before the ping (a tunnel in flight
 *       while the proxy is asked to stop).
 *   wineclient http [--proxy HOST:PORT] [--prime] [--trust-ca PEM] [--data BODY] URL
 *       WinHTTP request (POST with a JSON body when --data is given, else GET). --proxy names the proxy;
 *       --trust-ca adds the PEM certificate to the CurrentUser\Root store first, as an admin trusting
 *       exoproxy's CA does; --prime works around Wine's CONNECT with body headers (see prime_tunnel).
 *       Redirects are followed with the same method and body. Prints "status N" per hop and the
 *       final body; exit 0 when a response arrived.
 *   wineclient dacl PATH
 *       Prints the DACL of PATH as SDDL, as Windows reports it (GetNamedSecurityInfo), after a line
 *       "user SID" with the current user's SID, so the caller can compare with exoproxy's owner-only
 *       SDDL (docs: README "Windows: what is checked on Wine").
 */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <winhttp.h>
#include <wincrypt.h>
#include <aclapi.h>
#include <sddl.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

static int fail(const char *what)
{
    printf("FAIL %s (error %lu)\n", what, (unsigned long)GetLastError());
    return 1;
}

static int recv_line_prefix(SOCKET s, char *buf, int cap)
{
    int got = 0;
    while (got < cap - 1) {
        int n = recv(s, buf + got, cap - 1 - got, 0);
        if (n <= 0) break;
        got += n;
        buf[got] = 0;
        if (strstr(buf, "\r\n\r\n")) break;
    }
    buf[got] = 0;
    return got;
}

static int tunnel(const char *proxy_port, const char *target, int hold_ms)
{
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return fail("WSAStartup");
    struct addrinfo hints = {0}, *ai = NULL;
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo("127.0.0.1", proxy_port, &hints, &ai) != 0) return fail("getaddrinfo");
    SOCKET s = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (s == INVALID_SOCKET || connect(s, ai->ai_addr, (int)ai->ai_addrlen) != 0) return fail("connect to proxy");
    char req[512];
    snprintf(req, sizeof req, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target);
    send(s, req, (int)strlen(req), 0);
    char resp[4096];
    recv_line_prefix(s, resp, sizeof resp);
    if (strncmp(resp, "HTTP/1.1 200", 12) != 0) {
        printf("FAIL CONNECT answered: %.200s\n", resp);
        return 1;
    }
    if (hold_ms > 0) {
        printf("connected\n");
        Sleep(hold_ms);
    }
    send(s, "ping\n", 5, 0);
    char echo[16] = {0};
    int got = 0;
    while (got < 5) {
        int n = recv(s, echo + got, 5 - got, 0);
        if (n <= 0) break;
        got += n;
    }
    if (got != 5 || memcmp(echo, "ping\n", 5) != 0) {
        printf("FAIL no echo through the tunnel (%d bytes)\n", got);
        return 1;
    }
    printf("tunnel ok\n");
    closesocket(s);
    return 0;
}

static int trust_ca(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return fail("open CA file");
    static char pem[65536];
    size_t n = fread(pem, 1, sizeof pem - 1, f);
    fclose(f);
    pem[n] = 0;
    BYTE der[16384];
    DWORD der_len = sizeof der;
    if (!CryptStringToBinaryA(pem, 0, CRYPT_STRING_BASE64HEADER, der, &der_len, NULL, NULL))
        return fail("decode CA PEM");
    HCERTSTORE root = CertOpenSystemStoreW(0, L"ROOT");
    if (!root) return fail("open CurrentUser\\Root");
    if (!CertAddEncodedCertificateToStore(root, X509_ASN_ENCODING, der, der_len,
                                          CERT_STORE_ADD_REPLACE_EXISTING, NULL))
        return fail("add CA to CurrentUser\\Root");
    CertCloseStore(root, 0);
    return 0;
}

static wchar_t *wide(const char *s)
{
    int n = MultiByteToWideChar(CP_UTF8, 0, s, -1, NULL, 0);
    wchar_t *w = malloc(n * sizeof *w);
    MultiByteToWideChar(CP_UTF8, 0, s, -1, w, n);
    return w;
}

/* Wine's WinHTTP copies the request's Content-Length and Content-Type into the CONNECT it sends to the
 * proxy, which exoproxy refuses (a CONNECT has no body: docs/TESTING.md BAD-29). --prime first sends
 * a bodiless GET to the same URL so the tunnel is opened by a clean CONNECT; the POST then reuses the
 * pooled, already-tunnelled connection. */
static int prime_tunnel(HINTERNET conn, const wchar_t *path, DWORD flags)
{
    HINTERNET req = WinHttpOpenRequest(conn, L"GET", path, NULL, WINHTTP_NO_REFERER, WINHTTP_DEFAULT_ACCEPT_TYPES,
                                       flags);
    if (!req) return fail("WinHttpOpenRequest (prime)");
    DWORD off = WINHTTP_DISABLE_REDIRECTS;
    WinHttpSetOption(req, WINHTTP_OPTION_DISABLE_FEATURE, &off, sizeof off);
    if (!WinHttpSendRequest(req, WINHTTP_NO_ADDITIONAL_HEADERS, 0, NULL, 0, 0, 0)) return fail("WinHttpSendRequest (prime)");
    if (!WinHttpReceiveResponse(req, NULL)) return fail("WinHttpReceiveResponse (prime)");
    char buf[4096];
    DWORD got;
    while (WinHttpReadData(req, buf, sizeof buf, &got) && got > 0) {}
    WinHttpCloseHandle(req);
    return 0;
}

static int http(int argc, char **argv)
{
    const char *proxy = NULL, *ca = NULL, *data = NULL, *url = NULL;
    int prime = 0;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--proxy") && i + 1 < argc) proxy = argv[++i];
        else if (!strcmp(argv[i], "--trust-ca") && i + 1 < argc) ca = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--prime")) prime = 1;
        else url = argv[i];
    }
    if (!url) { printf("FAIL no URL\n"); return 2; }
    if (ca && trust_ca(ca)) return 1;

    wchar_t *proxy_w = proxy ? wide(proxy) : NULL;
    HINTERNET session = WinHttpOpen(L"exoproxy-wine-test/1",
                                    proxy_w ? WINHTTP_ACCESS_TYPE_NAMED_PROXY : WINHTTP_ACCESS_TYPE_NO_PROXY,
                                    proxy_w ? proxy_w : WINHTTP_NO_PROXY_NAME, WINHTTP_NO_PROXY_BYPASS, 0);
    if (!session) return fail("WinHttpOpen");
    WinHttpSetTimeouts(session, 10000, 10000, 20000, 20000);

    /* Redirects are followed here, re-sending the same method and body (curl's --post302), as the
     * Exchange front door's 302 to the tenant host expects; WinHTTP itself would turn a POST into GET. */
    wchar_t *url_w = wide(url);
    for (int hop = 0; hop < 5; hop++) {
        URL_COMPONENTS parts = {0};
        wchar_t host[256], path[2048];
        parts.dwStructSize = sizeof parts;
        parts.lpszHostName = host;
        parts.dwHostNameLength = 256;
        parts.lpszUrlPath = path;
        parts.dwUrlPathLength = 2048;
        if (!WinHttpCrackUrl(url_w, 0, 0, &parts)) return fail("WinHttpCrackUrl");
        HINTERNET conn = WinHttpConnect(session, host, parts.nPort, 0);
        if (!conn) return fail("WinHttpConnect");
        DWORD flags = parts.nScheme == INTERNET_SCHEME_HTTPS ? WINHTTP_FLAG_SECURE : 0;
        if (prime && data && prime_tunnel(conn, path, flags)) return 1;
        HINTERNET req = WinHttpOpenRequest(conn, data ? L"POST" : L"GET", path, NULL, WINHTTP_NO_REFERER,
                                           WINHTTP_DEFAULT_ACCEPT_TYPES, flags);
        if (!req) return fail("WinHttpOpenRequest");
        DWORD off = WINHTTP_DISABLE_REDIRECTS;
        WinHttpSetOption(req, WINHTTP_OPTION_DISABLE_FEATURE, &off, sizeof off);
        DWORD len = data ? (DWORD)strlen(data) : 0;
        const wchar_t *headers = data ? L"Content-Type: application/json\r\n" : WINHTTP_NO_ADDITIONAL_HEADERS;
        if (!WinHttpSendRequest(req, headers, (DWORD)-1L, (void *)data, len, len, 0)) return fail("WinHttpSendRequest");
        if (!WinHttpReceiveResponse(req, NULL)) return fail("WinHttpReceiveResponse");
        DWORD status = 0, size = sizeof status;
        WinHttpQueryHeaders(req, WINHTTP_QUERY_STATUS_CODE | WINHTTP_QUERY_FLAG_NUMBER, WINHTTP_HEADER_NAME_BY_INDEX,
                            &status, &size, WINHTTP_NO_HEADER_INDEX);
        printf("status %lu\n", (unsigned long)status);
        if (status == 301 || status == 302 || status == 307 || status == 308) {
            static wchar_t location[4096];
            DWORD loc_size = sizeof location;
            if (!WinHttpQueryHeaders(req, WINHTTP_QUERY_LOCATION, WINHTTP_HEADER_NAME_BY_INDEX, location,
                                     &loc_size, WINHTTP_NO_HEADER_INDEX))
                return fail("redirect without Location");
            printf("redirect %ls\n", location);
            url_w = location;
            WinHttpCloseHandle(req);
            WinHttpCloseHandle(conn);
            continue;
        }
        char buf[8192];
        DWORD got;
        while (WinHttpReadData(req, buf, sizeof buf, &got) && got > 0) fwrite(buf, 1, got, stdout);
        printf("\n");
        return 0;
    }
    printf("FAIL too many redirects\n");
    return 1;
}

static int dacl(const char *path)
{
    HANDLE token;
    BYTE buf[256];
    DWORD size;
    LPWSTR sid = NULL, sddl = NULL;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) return fail("OpenProcessToken");
    if (!GetTokenInformation(token, TokenUser, buf, sizeof buf, &size)) return fail("GetTokenInformation");
    if (!ConvertSidToStringSidW(((TOKEN_USER *)buf)->User.Sid, &sid)) return fail("ConvertSidToStringSid");
    printf("user %ls\n", sid);
    PSECURITY_DESCRIPTOR sd = NULL;
    DWORD err = GetNamedSecurityInfoW(wide(path), SE_FILE_OBJECT, DACL_SECURITY_INFORMATION, NULL, NULL, NULL,
                                      NULL, &sd);
    if (err != ERROR_SUCCESS) { SetLastError(err); return fail("GetNamedSecurityInfo"); }
    if (!ConvertSecurityDescriptorToStringSecurityDescriptorW(sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION,
                                                              &sddl, NULL))
        return fail("ConvertSecurityDescriptorToStringSecurityDescriptor");
    printf("dacl %ls\n", sddl);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc >= 4 && !strcmp(argv[1], "tunnel")) return tunnel(argv[2], argv[3], argc >= 5 ? atoi(argv[4]) : 0);
    if (argc >= 3 && !strcmp(argv[1], "dacl")) return dacl(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "http")) return http(argc - 2, argv + 2);
    printf("usage: wineclient tunnel PROXY_PORT HOST:PORT | http [--proxy H:P] [--prime] [--trust-ca PEM] [--data BODY] URL | dacl PATH\n");
    return 2;
}
