/* For tests under wine 8 only, never shipped: Rust's standard library (1.78 and later) takes
 * its random bytes from ProcessPrng in bcryptprimitives.dll, which wine 8 does not have
 * (wine 9 does). This stand-in answers from BCryptGenRandom, the system's generator.
 * scripts/test-windows builds it with mingw and puts it beside the exe. */
#include <windows.h>
#include <bcrypt.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, n, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
