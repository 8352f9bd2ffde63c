#include "perm.h"

#include <string.h>

#define SUB_TOKEN "{sub}"
#define SUB_TOKEN_LEN (sizeof(SUB_TOKEN) - 1)

static const char *const plain_permissions[] = {"query:raw"};

/* The channel alphabet of channel.h, which keeps its own class private. */
static int channel_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == '_' || c == '-' || c == ':' || c == '.' || c == '@' || c == '/';
}

static int is_full_grant(const char *perm) {
  return strcmp(perm, "*") == 0 || strcmp(perm, "*:*") == 0;
}

static int is_plain(const char *perm) {
  for (size_t i = 0; i < sizeof(plain_permissions) / sizeof(plain_permissions[0]); i++)
    if (strcmp(perm, plain_permissions[i]) == 0) return 1;
  return 0;
}

static int is_sub(const char *p) { return strncmp(p, SUB_TOKEN, SUB_TOKEN_LEN) == 0; }

/*
 * Splits "read:<pattern>" / "write:<pattern>": returns the pattern and sets
 * *action, or returns NULL for any other action.
 */
static const char *split_action(const char *perm, rt_perm_action_t *action) {
  if (strncmp(perm, "read:", 5) == 0) {
    *action = RT_PERM_READ;
    return perm + 5;
  }
  if (strncmp(perm, "write:", 6) == 0) {
    *action = RT_PERM_WRITE;
    return perm + 6;
  }
  return NULL;
}

static int valid_pattern(const char *p) {
  if (*p == '\0') return 0;
  while (*p != '\0') {
    if (is_sub(p)) {
      p += SUB_TOKEN_LEN;
    } else if (*p == '*' || channel_char((unsigned char)*p)) {
      p++;
    } else {
      return 0;
    }
  }
  return 1;
}

/*
 * strnlen bounds the scan, so an over-long string is refused without
 * reading all of it.
 */
int rt_perm_valid(const char *perm) {
  if (perm == NULL) return 0;
  size_t len = strnlen(perm, RT_PERM_MAX + 1);
  if (len == 0 || len > RT_PERM_MAX) return 0;
  if (is_full_grant(perm) || is_plain(perm)) return 1;
  rt_perm_action_t action;
  const char *pattern = split_action(perm, &action);
  return pattern != NULL && valid_pattern(pattern);
}

/*
 * The pattern with "{sub}" expanded, read through a cursor instead of being
 * built in a buffer: no allocation, and the user id's bytes can never be
 * taken for stars. A cursor is (i, k): byte i of the pattern and, when a
 * "{sub}" starts at i, byte k of the user id. The user id is non-empty
 * whenever the pattern has "{sub}", so k always names a real byte.
 */
typedef struct {
  const char *pat;
  const char *uid;
  size_t uid_len;
} expansion_t;

typedef struct {
  size_t i;
  size_t k;
} cursor_t;

static int at_end(const expansion_t *x, cursor_t c) { return x->pat[c.i] == '\0'; }

static int at_star(const expansion_t *x, cursor_t c) { return x->pat[c.i] == '*'; }

static char char_at(const expansion_t *x, cursor_t c) {
  return is_sub(x->pat + c.i) ? x->uid[c.k] : x->pat[c.i];
}

static cursor_t advance(const expansion_t *x, cursor_t c) {
  if (!is_sub(x->pat + c.i)) {
    c.i++;
  } else if (++c.k == x->uid_len) {
    c.i += SUB_TOKEN_LEN;
    c.k = 0;
  }
  return c;
}

/*
 * Classic iterative wildcard match: on a mismatch, go back to just after the
 * last star and let that star swallow one more channel byte. Earlier stars
 * never need revisiting because a later star can absorb anything they could,
 * which is what bounds the work to O(pattern * channel).
 */
static int match(const expansion_t *x, const char *s, size_t n) {
  cursor_t p = {0, 0}, after_star = {0, 0};
  size_t si = 0, star_si = 0;
  int have_star = 0;
  while (si < n) {
    if (!at_end(x, p) && at_star(x, p)) {
      have_star = 1;
      p = after_star = advance(x, p);
      star_si = si;
    } else if (!at_end(x, p) && char_at(x, p) == s[si]) {
      p = advance(x, p);
      si++;
    } else if (have_star) {
      p = after_star;
      si = ++star_si;
    } else {
      return 0;
    }
  }
  while (!at_end(x, p) && at_star(x, p)) p = advance(x, p);
  return at_end(x, p);
}

static int grants(const char *perm, rt_perm_action_t action, const char *channel, size_t len,
                  const char *user_id) {
  if (!rt_perm_valid(perm)) return 0;
  if (is_full_grant(perm)) return 1;
  rt_perm_action_t perm_action;
  const char *pattern = split_action(perm, &perm_action);
  if (pattern == NULL || perm_action != action) return 0;
  expansion_t x = {pattern, user_id, user_id != NULL ? strlen(user_id) : 0};
  if (x.uid_len == 0 && strstr(pattern, SUB_TOKEN) != NULL) return 0;
  return match(&x, channel, len);
}

int rt_perm_allows(const char *const *perms, size_t n, rt_perm_action_t action,
                   const char *channel, size_t channel_len, const char *user_id) {
  if (perms == NULL || channel == NULL || channel_len == 0) return 0;
  if (action != RT_PERM_READ && action != RT_PERM_WRITE) return 0;
  for (size_t i = 0; i < n; i++)
    if (grants(perms[i], action, channel, channel_len, user_id)) return 1;
  return 0;
}

int rt_perm_has(const char *const *perms, size_t n, const char *exact) {
  if (perms == NULL || exact == NULL) return 0;
  for (size_t i = 0; i < n; i++) {
    if (perms[i] == NULL) continue;
    if (strcmp(perms[i], exact) == 0 || is_full_grant(perms[i])) return 1;
  }
  return 0;
}
