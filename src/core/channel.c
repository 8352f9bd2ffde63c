#include "channel.h"

#include <string.h>

static int allowed(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == ':' || c == '.' || c == '@' || c == '/';
}

static int is_sep(char c) { return c == '/' || c == ':'; }

/*
 * A ".." segment is the string ".." bounded by the ends or separators; ".."
 * inside a longer segment ("v1..2") is harmless and allowed.
 */
int rt_channel_valid(const char *name, size_t len) {
  if (name == NULL || len == 0 || len > RT_CHANNEL_MAX || name[0] == '/') return 0;
  for (size_t i = 0; i < len; i++)
    if (!allowed((unsigned char)name[i])) return 0;
  size_t seg = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i == len || is_sep(name[i])) {
      if (i - seg == 2 && name[seg] == '.' && name[seg + 1] == '.') return 0;
      seg = i + 1;
    }
  }
  return 1;
}
