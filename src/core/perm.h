/*
 * Channel permissions: the strings of a token's "permissions" claim or of an
 * API key's configuration, checked at subscribe/publish time.
 *
 * A permission is "<action>:<pattern>":
 *   - action "read" allows subscribe and reading presence, "write" allows
 *     publish;
 *   - the pattern is matched against the whole channel name; '*' matches any
 *     run of characters, possibly empty and including ':' and '/';
 *   - "{sub}" in a pattern stands for the client's user id, substituted
 *     literally (a '*' in the user id matches only a '*'); a pattern with
 *     "{sub}" matches nothing for a client without a user id (NULL or "").
 *     The user id comes from the token issuer; ids containing ':' or '/'
 *     reach the channels spelled with them, so issuers should keep ids to
 *     the channel alphabet without separators.
 * "*" alone, or "*:*", grants everything (both actions and every plain
 * permission). Plain permissions name a capability rather than channels;
 * the one known today is "query:raw".
 *
 * Matching is the iterative wildcard match that backtracks only to the last
 * star, O(pattern * channel) in the worst case, so a hostile pattern such as
 * "a*a*a*a*b" cannot make it exponential. Nothing here allocates. All
 * functions are pure and may be called from any thread.
 */
#ifndef RT_CORE_PERM_H
#define RT_CORE_PERM_H

#include <stddef.h>

#define RT_PERM_MAX 1024 /* longest accepted permission string, in bytes */

typedef enum {
  RT_PERM_READ,  /* subscribe and presence reads: granted by "read:<pattern>" */
  RT_PERM_WRITE, /* publish: granted by "write:<pattern>" */
} rt_perm_action_t;

/*
 * Syntax check for configuration and API input. Returns 1 when `perm`
 * (NUL-terminated, borrowed) is "*", "*:*", a known plain permission
 * ("query:raw"), or "read:"/"write:" followed by a non-empty pattern of
 * channel characters ([A-Za-z0-9_-:.@/]), '*' and "{sub}", at most
 * RT_PERM_MAX bytes in all; 0 otherwise (NULL, unknown action, empty
 * pattern, '{' or '}' outside "{sub}", any other byte).
 */
int rt_perm_valid(const char *perm);

/*
 * Returns 1 when one of perms[0..n) grants `action` on the channel
 * channel[0..channel_len) (borrowed, need not be NUL-terminated) for the
 * client whose user id is `user_id` (NUL-terminated, borrowed; NULL or ""
 * when the client has none), else 0. Entries that are NULL or fail
 * rt_perm_valid grant nothing. A NULL or empty channel, or an unknown
 * action, is never allowed. The caller validates the channel name
 * (rt_channel_valid) before asking. Whether auth is on at all, and so
 * whether to ask, is the caller's decision.
 */
int rt_perm_allows(const char *const *perms, size_t n, rt_perm_action_t action,
                   const char *channel, size_t channel_len, const char *user_id);

/*
 * Returns 1 when perms[0..n) contains `exact` (NUL-terminated, borrowed;
 * e.g. "query:raw") verbatim, or a full grant ("*" or "*:*"), else 0. No
 * pattern matching: "read:*" does not contain "read:chat".
 */
int rt_perm_has(const char *const *perms, size_t n, const char *exact);

#endif
