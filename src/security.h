/*
 * Server-level security glue (src/security.c): builds the verifier, key
 * store and limiters from the configuration, and answers the questions the
 * connection code asks. Internal to librealtime.
 */
#ifndef RT_SECURITY_H
#define RT_SECURITY_H

#include <stddef.h>

#include "auth_jwt.h"
#include "errors.h"
#include "perm.h"

struct rt_server_s;

/* Builds the security state from srv->cfg. Returns 0 or RT_ECONFIG/RT_ENOMEM with *err. */
int rt_security_init(struct rt_server_s *srv, rt_errbuf_t *err);
void rt_security_free(struct rt_server_s *srv);

/*
 * Checks credentials (a token wins over a key; both borrowed). Returns 0 with
 * *out filled (caller destroys it), RT_ENOENT when neither was given, or
 * RT_ETOKEN / RT_EEXPIRED / RT_ENOMEM with the reason in *err (never the secret).
 */
int rt_security_check(struct rt_server_s *srv, const char *token, size_t token_len,
                      const char *key, size_t key_len, rt_identity_t *out, rt_errbuf_t *err);

/* 1 when a client with this identity may `action` on channel (always 1 when requireAuth is off). */
int rt_security_allows(const struct rt_server_s *srv, const rt_identity_t *id, int authenticated,
                       rt_perm_action_t action, const char *channel, size_t len);

/* Message validation of published data (size, depth, XSS policy): 0 or an RT_E* with *err. */
int rt_security_validate(const struct rt_server_s *srv, const char *json, size_t len,
                         rt_errbuf_t *err);

#endif
