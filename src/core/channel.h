/* Channel-name rules, shared by the protocol and the C API. */
#ifndef RT_CORE_CHANNEL_H
#define RT_CORE_CHANNEL_H

#include <stddef.h>

#define RT_CHANNEL_MAX 255

/*
 * 1 when name[0..len) is a valid channel: 1-255 bytes of [A-Za-z0-9_-:.@/],
 * no leading '/', and no ".." segment (between '/' or ':' separators or the
 * ends), so "../admin/secrets" is refused and "user:alice:notifications" is fine.
 */
int rt_channel_valid(const char *name, size_t len);

#endif
