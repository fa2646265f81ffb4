/*
 * Test-only stand-in for bcryptprimitives.dll under Wine 8, which has no such DLL. Rust's std (and
 * getrandom) import ProcessPrng from it for HashMap seeds and key generation, so without it the
 * Windows exe cannot start under Wine. Built from this source with mingw by scripts/wine-tests.sh into
 * the throwaway WINEPREFIX only; never shipped (docs: README "Windows: what is checked on Wine").
 *
 * ProcessPrng fills the buffer from the system CSPRNG via RtlGenRandom (advapi32 SystemFunction036),
 * which Wine implements on the host's random source. Like the real one, it only returns TRUE; a
 * failure of the source is not something the caller can handle, so it aborts the process instead.
 */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length); /* RtlGenRandom */

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T length)
{
    while (length > 0) {
        ULONG chunk = length > 0x10000000 ? 0x10000000 : (ULONG)length;
        if (!SystemFunction036(data, chunk))
            ExitProcess(0xC0000001); /* STATUS_UNSUCCESSFUL */
        data += chunk;
        length -= chunk;
    }
    return TRUE;
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance; (void)reason; (void)reserved;
    return TRUE;
}
