/*
 * SymbioseDB Realtime: embeddable WebSocket pub/sub server.
 *
 * The API mirrors the seed's `RealtimeServer` (start, stop, publish, subscribe,
 * getChannelStats, getClientInfo, getActiveConnections) in libuv's style:
 * functions return 0 or a negative RT_E* code, handles are opaque, and every
 * call except rt_server_publish_async() belongs to the loop thread.
 *
 * Ownership is stated on each declaration: "borrowed" pointers stay owned by
 * the caller and are not kept past the call; "returns a new ..." means the
 * caller frees it with the named function.
 */
#ifndef REALTIME_REALTIME_H
#define REALTIME_REALTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RT_BUILDING_SHARED)
#define RT_API __attribute__((visibility("default")))
#else
#define RT_API
#endif

#define RT_VERSION_STRING "0.1.0"

/*
 * One error space. XX(code, name, message): the snake_case names that are
 * not marked internal are the error codes of the wire protocol
 * (docs/protocol.md lists them; a unit test checks the two agree).
 */
#define RT_ERRNO_MAP(XX)                                                       \
  XX(EINVAL, "invalid_argument", "Invalid argument")                          \
  XX(ENOMEM, "internal_error", "Out of memory")                               \
  XX(EAGAIN, "again", "Need more input")                                      \
  XX(EBUSY, "busy", "Resource busy")                                          \
  XX(ENOENT, "not_found", "No such object")                                   \
  XX(EEXIST, "already_exists", "Object already exists")                       \
  XX(ESTATE, "invalid_state", "Operation not allowed in this state")          \
  XX(EIO, "io_error", "I/O error")                                            \
  XX(EADDR, "address_error", "Cannot listen on the configured address")       \
  XX(ECONFIG, "invalid_config", "Invalid configuration")                      \
  XX(EJSON, "invalid_json", "Invalid JSON")                                   \
  XX(ETYPE, "unknown_type", "Unknown message type")                           \
  XX(EMISSING, "missing_field", "Missing required field")                     \
  XX(EFIELD, "invalid_field", "Invalid field value")                          \
  XX(ECHANNEL, "invalid_channel", "Invalid channel name format")              \
  XX(ETOOLARGE, "message_too_large", "Message too large")                     \
  XX(EDEPTH, "nesting_too_deep", "JSON nesting too deep")                     \
  XX(ELIMIT, "too_many_subscriptions", "Too many subscriptions")              \
  XX(EAUTHREQ, "auth_required", "Authentication required")                    \
  XX(ETOKEN, "invalid_token", "Invalid token")                                \
  XX(EEXPIRED, "token_expired", "Token expired")                              \
  XX(EFORBIDDEN, "forbidden", "Permission denied")                            \
  XX(ERATE, "rate_limited", "Rate limit exceeded: Too many messages sent")    \
  XX(EMESSAGE, "invalid_message", "Message refused by validation")           \
  XX(EPRESENCEFULL, "presence_full", "Presence channel full")                \
  XX(EQUERY, "query_error", "Query failed")                                   \
  XX(EQREADONLY, "query_not_allowed", "Query not allowed")                    \
  XX(EQTIMEOUT, "query_timeout", "Query took too long")                       \
  XX(EQLIMIT, "query_too_large", "Query result too large")                    \
  XX(EQUNKNOWN, "unknown_query", "Unknown query or subscription")

typedef enum {
  RT_OK = 0,
#define RT_ERR_ENUM_(code, name, msg) RT_##code,
  RT__EFIRST = -1000,
  RT_ERRNO_MAP(RT_ERR_ENUM_)
#undef RT_ERR_ENUM_
  RT__ELAST
} rt_errno_t;

/* Human-readable message for an RT_E* code; never NULL, static storage. */
RT_API const char *rt_strerror(int err);
/* snake_case name of an RT_E* code ("invalid_json"); never NULL, static. */
RT_API const char *rt_err_name(int err);

/* ---------------------------------------------------------------- logging */

typedef enum { RT_LOG_DEBUG, RT_LOG_INFO, RT_LOG_WARN, RT_LOG_ERROR } rt_log_level_t;
/* Receives one formatted line (no trailing newline); borrowed for the call. */
typedef void (*rt_log_cb)(rt_log_level_t level, const char *line, void *user_data);
/*
 * Installs the process-wide log sink (NULL silences the library, the
 * default) and the lowest level passed to it. Call before starting servers.
 */
RT_API void rt_log_set_sink(rt_log_cb cb, rt_log_level_t min_level, void *user_data);

/* ---------------------------------------------------------- configuration */

/*
 * One API key accepted from the start (config file "apiKeys"). All pointers
 * are borrowed like the config's other strings; the key itself is a secret
 * and is never logged or echoed.
 */
typedef struct {
  const char *key;                 /* the key text clients present (X-API-Key, ?api_key=) */
  const char *name;                /* label; the client's user id becomes "apikey:<name>" */
  const char *const *permissions;  /* permission strings ("read:chat:*", "*"), see perm rules */
  size_t permission_count;         /* entries in permissions */
} rt_api_key_config_t;

/* A named live query of the configuration (seed: subscribeToQuery's SQL, by name). */
typedef struct {
  const char *name;       /* what clients subscribe to */
  const char *sql;        /* one read-only statement; $1.., ? or :name parameters */
  const char *permission; /* needed to subscribe when requireAuth is on, e.g. "read:orders"; NULL = none */
  const char *key;        /* column identifying a row across refreshes; NULL = derive */
} rt_query_config_t;

/*
 * The one open struct. rt_config_init() sets the seed's defaults; strings are
 * borrowed and must outlive rt_server_new() (the server copies them).
 */
typedef struct rt_config_s {
  const char *host;              /* listen address, default "0.0.0.0" */
  int port;                      /* listen port, default 8080; 0 picks a free one */
  const char *path;              /* WebSocket endpoint path, default "/ws" */
  uint32_t ping_interval_ms;     /* keep-alive ping period, default 30000; 0 off */
  uint32_t presence_timeout_ms;  /* presence TTL, default 60000 */
  int require_auth;              /* seed's requireAuth, default 0 */
  const char *jwt_secret;        /* seed's jwtSecret, default NULL */
  const char *jwt_public_key_file; /* PEM public key file for RS256/ES256, default NULL */
  const char *jwt_algorithms;    /* accepted "alg"s, comma list "HS256,RS256"; NULL = by keys */
  uint32_t jwt_leeway_s;         /* clock skew allowed on exp/nbf, seconds, default 30 */
  uint32_t auth_timeout_ms;      /* time to authenticate when requireAuth, default 10000 */
  uint32_t token_grace_ms;       /* time to re-auth after a token_expired push, default 30000 */
  const rt_api_key_config_t *api_keys; /* keys accepted from the start, default NULL */
  size_t api_key_count;          /* entries in api_keys, default 0 */
  struct {
    uint32_t max_connections;         /* per IP, 0 = unlimited */
    uint32_t max_messages_per_minute; /* per client, 0 = unlimited */
    uint32_t window_ms;               /* rate window, default 60000 */
    uint32_t subscribe;               /* subscribes per client per window, 0 = unlimited */
    uint32_t publish;                 /* publishes per client per window, 0 = unlimited */
    uint32_t presence;                /* presence commands per client per window, 0 = unlimited */
    uint32_t query;                   /* queries per client per window, 0 = unlimited */
    uint32_t disconnect_after;        /* close past this multiple of a limit, default 2; 0 never */
  } rate_limit;
  size_t max_message_size;       /* largest WebSocket message, default 1 MiB (1009) */
  size_t max_publish_size;       /* largest publish `data`, default 512 KiB */
  uint32_t max_subscriptions;    /* channels per client, default 1024 */
  size_t max_queued_bytes;       /* unsent bytes per client before 1008, default 4 MiB */
  size_t max_header_size;        /* upgrade request head limit (431), default 8 KiB */
  uint32_t handshake_timeout_ms; /* time to complete the upgrade, default 10000 */
  uint32_t shutdown_timeout_ms;  /* graceful stop budget, default 5000 */
  int io_uring;                  /* batch each flush's sends in one io_uring call when the
                                    kernel allows it (else writev), default 1 */
  uint32_t flush_interval_ms;    /* shortest time between two flushes of a worker (0-1000):
                                    fewer, larger writes under load for up to this much
                                    latency; default 0, a flush every loop iteration */
  uint32_t max_json_depth;       /* nesting limit for commands, default 64 */
  int validate_xss;              /* refuse script/HTML injection in published data, default 1 */
  size_t max_presence_data_size; /* bytes of one presence data object, default 4096 */
  const char *database_path;     /* SQLite file for live queries, default "realtime.db" */
  uint32_t database_poll_ms;     /* how often commits are looked for, default 50 */
  const char *database_setup;    /* SQL run once at start (e.g. demo tables), default NULL */
  const rt_query_config_t *queries; /* named live queries, default none */
  size_t query_count;            /* entries in queries */
  int live_allow_raw_sql;        /* clients may send SQL (with query:raw), default 0 */
  uint32_t live_timeout_ms;      /* time budget of one evaluation, default 1000 */
  uint32_t live_max_rows;        /* rows of one result, default 10000 */
  size_t live_max_bytes;         /* bytes of one encoded result, default 1 MiB */
  uint32_t max_presence_per_channel; /* presence entries per channel, default 10000 */
  uint32_t workers;              /* event-loop threads sharing the port (1-64), default 1 */
  void *loop;                    /* uv_loop_t * to run on (worker 0's); NULL = server owns one */
} rt_config_t;

RT_API void rt_config_init(rt_config_t *cfg);

/* ---------------------------------------------------------------- server */

typedef struct rt_server_s rt_server_t;
typedef struct rt_subscription_s rt_subscription_t;

/*
 * Creates a server from a borrowed config (copied). Nothing listens yet.
 * Returns 0 and *out, or RT_EINVAL/RT_ENOMEM. Free with rt_server_free().
 */
RT_API int rt_server_new(const rt_config_t *cfg, rt_server_t **out);
/* Frees a stopped (or never started) server. NULL is a no-op. */
RT_API void rt_server_free(rt_server_t *srv);
/*
 * Binds and listens (seed: start()). On success the bound port is known via
 * rt_server_port(). Returns RT_EADDR (details logged) or RT_ESTATE.
 */
RT_API int rt_server_start(rt_server_t *srv);
/* Port actually bound (useful with port 0); 0 before start. */
RT_API int rt_server_port(const rt_server_t *srv);
/*
 * Runs the server's own loop until the server has stopped. Only for servers
 * created without cfg->loop; embedders with their own loop run it themselves.
 */
RT_API int rt_server_run(rt_server_t *srv);
/*
 * Graceful stop (seed: stop()): closes the listener, sends close 1001 to every
 * client after flushing what is queued, waits up to shutdown_timeout_ms, then
 * closes the remaining sockets and drops all channels and subscriptions.
 * Loop thread only; rt_server_stop_async() is the thread/signal-safe form.
 */
RT_API void rt_server_stop(rt_server_t *srv);
RT_API void rt_server_stop_async(rt_server_t *srv);

/* Metadata of a delivered message, borrowed for the callback. */
typedef struct {
  uint64_t publisher_id; /* client id of the publisher, 0 = server-side */
  int64_t timestamp_ms;  /* publish time, ms since the epoch */
} rt_msg_meta_t;

/*
 * Server-side subscriber callback. `channel` and `data` (the published JSON
 * bytes, exactly as sent, not NUL-terminated) are borrowed for the call.
 * Runs on the loop thread; it may publish, subscribe or unsubscribe.
 */
typedef void (*rt_message_cb)(const char *channel, const char *data, size_t len,
                              const rt_msg_meta_t *meta, void *user_data);

/*
 * Publishes `json` (borrowed; must be one valid JSON value) to `channel`.
 * Returns the number of subscribers reached (>= 0) or a negative RT_E*
 * (RT_ECHANNEL, RT_EJSON, RT_ETOOLARGE).
 */
RT_API int64_t rt_server_publish(rt_server_t *srv, const char *channel, const char *json,
                                 size_t len);
/*
 * Thread-safe publish: copies the arguments and hands them to the loop
 * thread. Returns 0 once queued (validation errors are logged by the loop),
 * or RT_ECHANNEL / RT_ETOOLARGE / RT_ENOMEM / RT_ESTATE when not running.
 */
RT_API int rt_server_publish_async(rt_server_t *srv, const char *channel, const char *json,
                                   size_t len);
/*
 * Server-side subscription (seed: subscribe()). Returns 0 and a handle in
 * *out, owned by the server until rt_server_unsubscribe() (or server free).
 */
RT_API int rt_server_subscribe(rt_server_t *srv, const char *channel, rt_message_cb cb,
                               void *user_data, rt_subscription_t **out);
/* Ends a server-side subscription; the handle is invalid afterwards. */
RT_API void rt_server_unsubscribe(rt_server_t *srv, rt_subscription_t *sub);

/* -------------------------------------------------------------- security */

/* Result of rt_server_authenticate (seed: AuthResult). */
typedef struct {
  int success;             /* 1 when the token verified */
  char *user_id;           /* "sub" (or "id") claim, or NULL; owned by the struct */
  char **permissions;      /* "permissions" claim; owned by the struct */
  size_t permission_count; /* entries in permissions */
  char error[256];         /* why it failed ("Token expired", ...); never contains the token */
} rt_auth_result_t;

/*
 * Verifies a JWT against the configured keys (seed: authenticateConnection).
 * Returns 0 with out->success = 1, or RT_ETOKEN / RT_EEXPIRED / RT_EAUTHREQ
 * (token NULL) with out->error set. Free with rt_auth_result_destroy.
 */
RT_API int rt_server_authenticate(rt_server_t *srv, const char *token, rt_auth_result_t *out);
RT_API void rt_auth_result_destroy(rt_auth_result_t *r);

/* What a connecting client presents (seed: handleConnection's argument); all borrowed, may be NULL. */
typedef struct {
  const char *token;   /* JWT */
  const char *api_key; /* API key */
  const char *ip;      /* remote address, for the per-IP connection limit */
} rt_connection_request_t;

/*
 * The admission decision the server makes at a WebSocket upgrade, for
 * embedders that accept connections elsewhere (seed: handleConnection).
 * Returns 0 (would be admitted), RT_ELIMIT (the IP is at
 * rateLimit.maxConnections), RT_ETOKEN / RT_EEXPIRED (bad credentials) or
 * RT_EAUTHREQ (requireAuth and no credentials). Creates no connection.
 */
RT_API int rt_server_handle_connection(rt_server_t *srv, const rt_connection_request_t *req);

/*
 * Adds an API key at run time (seed: addApiKey). key, name and permissions
 * are copied (the key only as a SHA-256 digest). Returns 0, RT_EEXIST,
 * RT_EINVAL (empty key or name, bad permission syntax) or RT_ENOMEM.
 */
RT_API int rt_server_add_api_key(rt_server_t *srv, const char *key, const char *name,
                                 const char *const *permissions, size_t count);
/* Revokes a key and closes the clients authenticated with it (close 3500). 0 or RT_ENOENT. */
RT_API int rt_server_revoke_api_key(rt_server_t *srv, const char *key);

/*
 * 1 when connected client `client_id` may read (write = 0: subscribe) or
 * write (write = 1: publish) `channel` (seed: checkChannelPermission); 0 when
 * not, or when there is no such client.
 */
RT_API int rt_server_check_channel_permission(rt_server_t *srv, uint64_t client_id,
                                              const char *channel, int write);
/*
 * Charges one `operation` ("message", "subscribe", "publish", "presence",
 * "query") to a connected client's rate limits (seed: enforceRateLimit).
 * Returns 0 (within the limit), RT_ERATE, RT_ENOENT (no such client) or
 * RT_EINVAL (unknown operation).
 */
RT_API int rt_server_enforce_rate_limit(rt_server_t *srv, uint64_t client_id,
                                        const char *operation);
/*
 * Validates a message the way a publish is validated (seed: validateMessage):
 * one JSON value, maxPublishSize, maxJsonDepth and the XSS policy. Returns 0
 * or RT_EJSON / RT_ETOOLARGE / RT_EDEPTH / RT_EMESSAGE, with the reason
 * copied into errmsg (may be NULL).
 */
RT_API int rt_server_validate_message(const rt_server_t *srv, const char *json, size_t len,
                                      char *errmsg, size_t errmsg_cap);

/* -------------------------------------------------------------- presence */

/* One presence entry (seed: PresenceData), owned by the array it is in. */
typedef struct {
  char *client_id;      /* "7" for WebSocket client 7, or an embedder's virtual id */
  char *user_id;        /* authenticated user id, or NULL */
  char *data;           /* the JSON data as given, NUL-terminated */
  int64_t joined_at_ms; /* ms since the epoch */
  int64_t updated_at_ms;
} rt_presence_info_t;

/*
 * Sets presence for a client in a channel (seed: updatePresence): joins, or
 * updates the data of an existing entry. client_id may name a WebSocket
 * client ("7") or a virtual one of the embedder's. json (borrowed) is one
 * JSON value. Subscribers get a presence_join/presence_update push.
 * Returns 0, RT_ECHANNEL, RT_EJSON, RT_ETOOLARGE (maxPresenceDataSize),
 * RT_EPRESENCEFULL (maxPresencePerChannel) or RT_ENOMEM.
 */
RT_API int rt_server_update_presence(rt_server_t *srv, const char *client_id, const char *channel,
                                     const char *json, size_t len);
/* Removes a client's presence from a channel (leave pushed). 0 or RT_ENOENT. */
RT_API int rt_server_remove_presence(rt_server_t *srv, const char *client_id, const char *channel);
/*
 * The entries of a channel in join order (seed: getPresence), as a new array
 * for rt_presence_info_free. 0 (possibly 0 entries) or RT_ENOMEM.
 */
RT_API int rt_server_get_presence(rt_server_t *srv, const char *channel, rt_presence_info_t **out,
                                  size_t *count);
RT_API void rt_presence_info_free(rt_presence_info_t *info, size_t count);

/* ---------------------------------------------------------------- events */

typedef enum {
  RT_EVENT_CONNECTED,    /* a WebSocket client completed the upgrade */
  RT_EVENT_DISCONNECTED, /* a WebSocket client is gone */
  RT_EVENT_SUBSCRIBED,   /* a client subscribed to a channel */
  RT_EVENT_UNSUBSCRIBED, /* a client unsubscribed (not fired for disconnects) */
  RT_EVENT_PUBLISHED,    /* a message was published (by a client or the server) */
  RT_EVENT_PRESENCE,     /* a presence entry joined, changed or left */
  RT_EVENT_ERROR,        /* a client's command failed (the error reply it got) */
  RT_EVENT__COUNT
} rt_event_type_t;

/* What happened; every pointer is borrowed for the callback. Unused fields are 0/NULL. */
typedef struct {
  rt_event_type_t type;
  uint64_t client_id;          /* the client concerned; 0 for server-side actions */
  const char *address;         /* CONNECTED, DISCONNECTED: "ip:port" */
  const char *user_id;         /* CONNECTED (if authenticated), PRESENCE (the entry's) */
  const char *channel;         /* SUBSCRIBED, UNSUBSCRIBED, PUBLISHED, PRESENCE */
  size_t size;                 /* PUBLISHED: data bytes */
  int64_t delivered;           /* PUBLISHED: subscribers reached */
  int close_code;              /* DISCONNECTED: close code sent or received (1006: none) */
  const char *reason;          /* DISCONNECTED: close reason; ERROR: the message */
  const char *code;            /* ERROR: the wire error code ("forbidden") */
  int presence_change;         /* PRESENCE: 1 join, 2 update, 3 leave */
  const char *presence_client; /* PRESENCE: the entry's client id */
  const char *data;            /* PRESENCE: the entry's data (JSON) */
  size_t data_len;
} rt_event_t;

typedef void (*rt_event_cb)(const rt_event_t *ev, void *user_data);
typedef struct rt_listener_s rt_listener_t;

/*
 * Registers a listener (seed: "Observable"); several per event run in
 * registration order on the loop thread and may call any API, including
 * rt_server_off on themselves. Returns 0 and a handle, or RT_EINVAL/RT_ENOMEM.
 */
RT_API int rt_server_on(rt_server_t *srv, rt_event_type_t type, rt_event_cb cb, void *user_data,
                        rt_listener_t **out);
/* Removes a listener; the handle is invalid afterwards. NULL is a no-op. */
RT_API void rt_server_off(rt_server_t *srv, rt_listener_t *listener);

/* ---------------------------------------------------------- live queries */

/*
 * Subscribes connected client `client_id` to `sql` with `params_json` (an
 * array or object, borrowed, NULL for none), like the seed's
 * subscribeToQuery: the client receives the ack with the rows, then a
 * query_diff or query_result after each change. The SQL is trusted (not
 * limited by liveQueries.allowRawSql) but must still be one read-only
 * statement. The subscription id is copied into sub_id. Returns 0, RT_ENOENT
 * (no such client), RT_EQUNKNOWN (live queries not configured: no database),
 * RT_EQREADONLY, RT_EQUERY or RT_ENOMEM.
 */
RT_API int rt_server_subscribe_query(rt_server_t *srv, uint64_t client_id, const char *sql,
                                     const char *params_json, char sub_id[24]);
/* Ends a query subscription by id (seed: unsubscribeFromQuery). 0 or RT_EQUNKNOWN. */
RT_API int rt_server_unsubscribe_query(rt_server_t *srv, const char *sub_id);
/*
 * Pushes `rows_json` (a JSON array of row objects, borrowed) as the result of
 * every subscription to `sql` (seed: notifyQueryUpdate), for data that lives
 * outside the server's database. Returns the number of pushes, or
 * RT_EJSON / RT_EINVAL / RT_ENOMEM.
 */
RT_API int64_t rt_server_notify_query_update(rt_server_t *srv, const char *sql,
                                             const char *rows_json, size_t len);

/* ------------------------------------------------------------ statistics */

typedef struct {
  char *name;                  /* channel name (owned by the struct) */
  uint64_t subscribers;        /* current subscribers, clients and server-side */
  uint64_t messages_published; /* publishes accepted on this channel */
  uint64_t messages_delivered; /* deliveries (one per subscriber per message) */
  uint64_t bytes_published;    /* sum of published data sizes */
  uint64_t bytes_delivered;    /* sum of data bytes over all deliveries */
  int64_t created_at_ms;       /* channel creation, ms since the epoch */
  int64_t last_activity_ms;    /* last publish/subscribe/unsubscribe */
  double message_rate;         /* publishes per second over the last minute */
  uint64_t presence;           /* presence entries in the channel */
} rt_channel_stats_t;

/*
 * Statistics of one channel (name non-NULL) or all channels (name NULL).
 * Returns 0 with a new array in *out of *count entries (free with
 * rt_channel_stats_free), or RT_ENOENT when the named channel does not exist.
 */
RT_API int rt_server_channel_stats(rt_server_t *srv, const char *name, rt_channel_stats_t **out,
                                   size_t *count);
RT_API void rt_channel_stats_free(rt_channel_stats_t *stats, size_t count);

typedef struct {
  uint64_t id;             /* client id, unique for the server's life */
  char remote_addr[64];    /* "ip:port" */
  int64_t connected_at_ms; /* upgrade time, ms since the epoch */
  char **subscriptions;    /* channel names (owned by the struct) */
  size_t subscription_count;
  uint64_t messages_in;    /* text messages received */
  uint64_t messages_out;   /* messages queued to the client */
  uint64_t bytes_in;       /* payload bytes received */
  uint64_t bytes_out;      /* frame bytes queued to the client */
  int64_t last_activity_ms; /* last message received, ms since the epoch */
  char user_id[128];       /* authenticated user id ("" when anonymous; cut to fit) */
} rt_client_info_t;

/*
 * Info about one client (id != 0) or all WebSocket clients (id == 0).
 * Returns 0 with a new array (free with rt_client_info_free), or RT_ENOENT.
 */
RT_API int rt_server_client_info(rt_server_t *srv, uint64_t id, rt_client_info_t **out,
                                 size_t *count);
RT_API void rt_client_info_free(rt_client_info_t *info, size_t count);

/* Open WebSocket connections (seed: getActiveConnections()). */
RT_API size_t rt_server_active_connections(const rt_server_t *srv);

typedef struct {
  uint64_t connections_total;     /* upgrades accepted since start */
  uint64_t slow_consumers_closed; /* clients cut off past max_queued_bytes */
  uint64_t protocol_errors;       /* connections closed for framing errors */
  uint64_t messages_published;    /* all channels */
  uint64_t messages_delivered;    /* all channels */
  uint64_t socket_writes;         /* write system calls (try_write + uv_write) */
  uint64_t frames_written;        /* frames those calls carried to completion */
} rt_server_totals_t;

RT_API void rt_server_totals(const rt_server_t *srv, rt_server_totals_t *out);

#ifdef __cplusplus
}
#endif
#endif
