/*
 * The server's security state and the public calls that mirror the seed's
 * security methods (authenticateConnection, handleConnection, addApiKey,
 * checkChannelPermission, enforceRateLimit, validateMessage). The decisions
 * are made by the pure modules (auth_jwt, auth_apikey, perm, ratelimit,
 * validate); this file owns their state and applies the configuration:
 * with requireAuth off everything is allowed, as in the seed; with it on,
 * only what a token or key grants (docs/security.md).
 */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "auth_apikey.h"
#include "auth_jwt.h"
#include "log.h"
#include "perm.h"
#include "proto.h"
#include "security.h"
#include "server_internal.h"
#include "worker.h"
#include "validate.h"

/* Reads a whole PEM file (small by nature; capped so a wrong path cannot exhaust memory). */
static char *read_pem(const char *path, size_t *len, rt_errbuf_t *err) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    rt_errbuf_set(err, RT_ECONFIG, "jwtPublicKeyFile: cannot open \"%s\"", path);
    return NULL;
  }
  size_t cap = 64 * 1024;
  char *buf = rt_malloc(cap);
  size_t n = buf != NULL ? fread(buf, 1, cap, f) : 0;
  fclose(f);
  if (buf == NULL || n == 0 || n == cap) {
    rt_free(buf);
    rt_errbuf_set(err, RT_ECONFIG, "jwtPublicKeyFile: \"%s\" is empty or larger than 64 KiB", path);
    return NULL;
  }
  *len = n;
  return buf;
}

static int init_jwt(rt_server_t *srv, rt_errbuf_t *err) {
  const rt_config_t *cfg = &srv->cfg;
  if (cfg->jwt_secret == NULL && cfg->jwt_public_key_file == NULL) return 0;
  rt_jwt_config_t jc = {0};
  size_t pem_len = 0;
  char *pem = NULL;
  int r = 0;
  if (cfg->jwt_public_key_file != NULL && (pem = read_pem(cfg->jwt_public_key_file, &pem_len, err)) == NULL)
    return RT_ECONFIG;
  if (cfg->jwt_algorithms != NULL) r = rt_jwt_parse_algorithms(cfg->jwt_algorithms, &jc.algorithms, err);
  if (r == 0) {
    jc.secret = cfg->jwt_secret;
    jc.secret_len = cfg->jwt_secret != NULL ? strlen(cfg->jwt_secret) : 0;
    jc.public_key_pem = pem;
    jc.pem_len = pem_len;
    jc.leeway_s = cfg->jwt_leeway_s;
    r = rt_jwt_verifier_new(&jc, &srv->jwt, err);
  }
  rt_free(pem);
  return r;
}

static int init_api_keys(rt_server_t *srv, rt_errbuf_t *err) {
  srv->apikeys = rt_apikey_store_new();
  if (srv->apikeys == NULL) return RT_ENOMEM;
  for (size_t i = 0; i < srv->cfg.api_key_count; i++) {
    const rt_api_key_config_t *k = &srv->cfg.api_keys[i];
    int r = rt_apikey_add(srv->apikeys, k->key, strlen(k->key), k->name, k->permissions,
                          k->permission_count);
    if (r != 0) return rt_errbuf_set(err, r, "apiKeys[%zu]: %s", i, rt_strerror(r));
  }
  return 0;
}

static void init_rate_policy(rt_server_t *srv) {
  const rt_config_t *cfg = &srv->cfg;
  uint32_t w = cfg->rate_limit.window_ms;
  rt_rate_policy_t *p = &srv->rate_policy;
  memset(p, 0, sizeof(*p));
  p->rules[RT_RATE_MESSAGE] = (rt_rate_rule_t){cfg->rate_limit.max_messages_per_minute, w};
  p->rules[RT_RATE_SUBSCRIBE] = (rt_rate_rule_t){cfg->rate_limit.subscribe, w};
  p->rules[RT_RATE_PUBLISH] = (rt_rate_rule_t){cfg->rate_limit.publish, w};
  p->rules[RT_RATE_PRESENCE] = (rt_rate_rule_t){cfg->rate_limit.presence, w};
  p->rules[RT_RATE_QUERY] = (rt_rate_rule_t){cfg->rate_limit.query, w};
  p->disconnect_after = cfg->rate_limit.disconnect_after;
}

int rt_security_init(rt_server_t *srv, rt_errbuf_t *err) {
  int r = init_jwt(srv, err);
  if (r == 0) r = init_api_keys(srv, err);
  if (r == 0 && srv->cfg.rate_limit.max_connections > 0 &&
      (srv->iplimit = rt_iplimit_new(srv->cfg.rate_limit.max_connections)) == NULL)
    r = RT_ENOMEM;
  if (r == 0 && srv->cfg.require_auth && srv->jwt == NULL && rt_apikey_count(srv->apikeys) == 0)
    r = rt_errbuf_set(err, RT_ECONFIG,
                      "requireAuth is on but no jwtSecret, jwtPublicKeyFile or apiKeys is set");
  init_rate_policy(srv);
  return r;
}

void rt_security_free(rt_server_t *srv) {
  rt_jwt_verifier_free(srv->jwt);
  rt_apikey_store_free(srv->apikeys);
  rt_iplimit_free(srv->iplimit);
  srv->jwt = NULL;
  srv->apikeys = NULL;
  srv->iplimit = NULL;
}

/*
 * A server without requireAuth that has no key of a kind ignores credentials
 * of that kind (a `token` query parameter may mean something else to the
 * application); with requireAuth they are refused, which says more than
 * "auth_required" would.
 */
int rt_security_check(rt_server_t *srv, const char *token, size_t token_len, const char *key,
                      size_t key_len, rt_identity_t *out, rt_errbuf_t *err) {
  memset(out, 0, sizeof(*out));
  if (!srv->cfg.require_auth && srv->jwt == NULL) token = NULL;
  if (!srv->cfg.require_auth && rt_apikey_count(srv->apikeys) == 0) key = NULL;
  if (token != NULL) {
    if (srv->jwt == NULL)
      return rt_errbuf_set(err, RT_ETOKEN, "Invalid token: no JWT key is configured");
    return rt_jwt_verify(srv->jwt, token, token_len, rt_wall_ms() / 1000, out, err);
  }
  if (key != NULL) {
    char *name = NULL;
    int r = rt_apikey_lookup(srv->apikeys, key, key_len, out, &name);
    rt_free(name);
    return r == 0 ? 0 : rt_errbuf_set(err, r, "%s", r == RT_ETOKEN ? "Invalid API key" : rt_strerror(r));
  }
  return RT_ENOENT;
}

int rt_security_allows(const rt_server_t *srv, const rt_identity_t *id, int authenticated,
                       rt_perm_action_t action, const char *channel, size_t len) {
  if (!srv->cfg.require_auth) return 1;
  if (!authenticated) return 0;
  return rt_perm_allows((const char *const *)id->permissions, id->permission_count, action,
                        channel, len, id->user_id);
}

int rt_security_validate(const rt_server_t *srv, const char *json, size_t len, rt_errbuf_t *err) {
  rt_validate_config_t vc = {srv->cfg.validate_xss, srv->cfg.max_json_depth,
                             srv->cfg.max_publish_size};
  return rt_validate_data(json, len, &vc, err);
}

/* ------------------------------------------------------------- public API */

int rt_server_authenticate(rt_server_t *srv, const char *token, rt_auth_result_t *out) {
  memset(out, 0, sizeof(*out));
  if (token == NULL) {
    snprintf(out->error, sizeof(out->error), "%s", "Authentication required");
    return RT_EAUTHREQ;
  }
  rt_identity_t id;
  rt_errbuf_t err = {{0}};
  rt_srv_lock(srv);
  int r = rt_security_check(srv, token, strlen(token), NULL, 0, &id, &err);
  rt_srv_unlock(srv);
  if (r != 0) {
    snprintf(out->error, sizeof(out->error), "%s", err.msg[0] ? err.msg : rt_strerror(r));
    return r;
  }
  out->success = 1;
  out->user_id = id.user_id;
  out->permissions = id.permissions;
  out->permission_count = id.permission_count;
  return 0;
}

void rt_auth_result_destroy(rt_auth_result_t *r) {
  if (r == NULL) return;
  rt_identity_t id = {r->user_id, r->permissions, r->permission_count, 0};
  rt_identity_destroy(&id);
  memset(r, 0, sizeof(*r));
}

static int handle_connection(rt_server_t *srv, const rt_connection_request_t *req) {
  if (srv->iplimit != NULL && req->ip != NULL &&
      rt_iplimit_count(srv->iplimit, req->ip) >= srv->cfg.rate_limit.max_connections)
    return RT_ELIMIT;
  rt_identity_t id;
  int r = rt_security_check(srv, req->token, req->token ? strlen(req->token) : 0, req->api_key,
                            req->api_key ? strlen(req->api_key) : 0, &id, NULL);
  rt_identity_destroy(&id);
  if (r == RT_ENOENT) return srv->cfg.require_auth ? RT_EAUTHREQ : 0;
  return r;
}

int rt_server_handle_connection(rt_server_t *srv, const rt_connection_request_t *req) {
  rt_srv_lock(srv);
  int r = handle_connection(srv, req);
  rt_srv_unlock(srv);
  return r;
}

int rt_server_add_api_key(rt_server_t *srv, const char *key, const char *name,
                          const char *const *permissions, size_t count) {
  if (key == NULL || name == NULL) return RT_EINVAL;
  for (size_t i = 0; i < count; i++)
    if (!rt_perm_valid(permissions[i])) return RT_EINVAL;
  rt_srv_lock(srv);
  int r = rt_apikey_add(srv->apikeys, key, strlen(key), name, permissions, count);
  rt_srv_unlock(srv);
  return r;
}

/*
 * Revoking a key also closes the clients that authenticated with it (their
 * user id is "apikey:<name>"), as Redis's ACL changes kill affected pub/sub
 * clients: a revoked key must not keep its subscriptions alive.
 */
static int revoke_api_key(rt_server_t *srv, const char *key) {
  rt_identity_t id;
  char *name = NULL;
  if (rt_apikey_lookup(srv->apikeys, key, strlen(key), &id, &name) != 0) return RT_ENOENT;
  rt_free(name);
  int r = rt_apikey_revoke(srv->apikeys, key, strlen(key));
  if (r == 0) rt_conn_close_user(srv, id.user_id, RT_CLOSE_TOKEN_REVOKED, "API key revoked");
  rt_identity_destroy(&id);
  return r;
}

/* Closing the clients of another worker goes through its inbox (rt_conn_close_user). */
int rt_server_revoke_api_key(rt_server_t *srv, const char *key) {
  if (key == NULL) return RT_EINVAL;
  rt_srv_lock(srv);
  int r = revoke_api_key(srv, key);
  rt_srv_unlock(srv);
  return r;
}

int rt_server_check_channel_permission(rt_server_t *srv, uint64_t client_id, const char *channel,
                                       int write) {
  rt_srv_lock(srv);
  rt_conn_t *c = rt_conn_find(srv, client_id);
  int r = c != NULL && channel != NULL &&
          rt_security_allows(srv, &c->ident, c->authenticated,
                             write ? RT_PERM_WRITE : RT_PERM_READ, channel, strlen(channel));
  rt_srv_unlock(srv);
  return r;
}

int rt_server_enforce_rate_limit(rt_server_t *srv, uint64_t client_id, const char *operation) {
  rt_srv_lock(srv);
  rt_conn_t *c = rt_conn_find(srv, client_id);
  int op = operation != NULL ? rt_rate_op_parse(operation) : -1;
  int r = c == NULL ? RT_ENOENT : op < 0 ? RT_EINVAL : rt_conn_rate_take(c, (rt_rate_op_t)op, NULL);
  rt_srv_unlock(srv);
  return r;
}

int rt_server_validate_message(const rt_server_t *srv, const char *json, size_t len, char *errmsg,
                               size_t errmsg_cap) {
  rt_errbuf_t err = {{0}};
  size_t start, vlen;
  int r = rt_json_validate(json, len, srv->cfg.max_json_depth, &start, &vlen, &err);
  if (r == 0) r = len > srv->cfg.max_publish_size
                      ? rt_errbuf_set(&err, RT_ETOOLARGE, "Message too large: %zu bytes (limit %zu)",
                                      len, srv->cfg.max_publish_size)
                      : rt_security_validate(srv, json + start, vlen, &err);
  if (r != 0 && errmsg != NULL && errmsg_cap > 0) snprintf(errmsg, errmsg_cap, "%s", err.msg);
  return r;
}
