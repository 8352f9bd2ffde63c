/*
 * SHA-1 (FIPS 180-4) for the WebSocket accept key only (RFC 6455 4.2.2),
 * where it is a fingerprint, not a security mechanism. It is ours rather
 * than OpenSSL's because OpenSSL 3's SHA1() loads and initialises its
 * provider machinery on first use: about 2 MB of resident memory in a server
 * that otherwise never touches libcrypto (no JWT keys configured), measured
 * as RSS before and after the first handshake. Never use it for anything
 * that needs collision resistance.
 */
#ifndef RT_CORE_SHA1_H
#define RT_CORE_SHA1_H

#include <stddef.h>
#include <stdint.h>

#define RT_SHA1_LEN 20

/* digest = SHA-1(data[0..len)). */
void rt_sha1(const void *data, size_t len, uint8_t digest[RT_SHA1_LEN]);

#endif
