/*
 * Presence: who is in which channel, with what data, since when.
 *
 * Pure bookkeeping in the style of the hub: no sockets, no timers, no clock
 * of its own. Every time is an argument, in two clocks:
 * - wall_ms (ms since the epoch) is what clients see: joinedAt, updatedAt;
 * - mono_ms (any monotonic epoch) drives expiry. It must not go backwards
 *   across calls; a stamp older than the newest one already recorded is
 *   raised to it, so expiry stays ordered (a late stamp expires no earlier
 *   than the entries refreshed before it).
 *
 * An entry is keyed by (channel, client id). Client ids are strings: the
 * server uses the decimal text of a connection's numeric id, and embedders
 * may use any id for virtual clients (the seed's updatePresence('client-123',
 * 'lobby', {...})). A channel exists here while it has entries, and a client
 * while it has entries.
 *
 * Expiry: all entries share one timeout, so they sit in one list ordered by
 * last refresh (a refresh moves an entry to the back) and a sweep pops from
 * the front: it costs O(expired entries), not O(all entries). An entry is
 * live while mono_ms < last refresh + timeout_ms; from that instant on, the
 * next sweep removes it.
 *
 * Removal callbacks (rt_presence_cb) run after the entry has left every
 * index (counts, lookups and foreach no longer see it) and before its memory
 * is freed, so the caller can encode the leave push from the view. A removal
 * callback may call any function of this module on the same object.
 *
 * All calls belong to one thread (the loop thread); nothing here locks.
 * Every error leaves the state unchanged, including RT_ENOMEM. Pointer
 * parameters must be non-NULL unless their description allows NULL.
 */
#ifndef RT_CORE_PRESENCE_H
#define RT_CORE_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

#include "errors.h"
#include "proto.h"
#include "realtime/realtime.h"

typedef struct rt_presence_s rt_presence_t;

typedef struct {
  size_t max_data_size;             /* largest data in bytes; 0 = no limit */
  uint32_t max_entries_per_channel; /* entries one channel may hold; 0 = no limit */
  uint32_t timeout_ms;              /* lifetime after the last refresh; 0 = never expire */
} rt_presence_limits_t;

typedef enum {
  RT_PRESENCE_JOIN = 1, /* a new entry */
  RT_PRESENCE_UPDATE,   /* an existing entry got new data */
  RT_PRESENCE_LEAVE     /* an entry was removed (leave, disconnect or expiry) */
} rt_presence_change_t;

/*
 * A borrowed view of one entry. Every pointer points into the module's
 * storage and stays valid until the next call that changes the presence
 * object (set, remove, remove_client, touch_client, sweep, free); inside a
 * removal callback, until the callback returns or itself changes the object.
 * Copy what you keep.
 */
typedef struct {
  const char *channel;   /* channel name, NUL-terminated */
  size_t channel_len;    /* strlen(channel) */
  const char *client_id; /* client id, NUL-terminated */
  const char *user_id;   /* authenticated user, NUL-terminated; NULL when none */
  const char *data;      /* exact JSON bytes given to rt_presence_set, NUL-terminated */
  size_t data_len;       /* bytes in data, without the NUL */
  int64_t joined_at_ms;  /* wall clock of the join; kept across updates */
  int64_t updated_at_ms; /* wall clock of the last set (join or update) */
} rt_presence_entry_t;

/*
 * Told about one removed entry (change is RT_PRESENCE_LEAVE). `e` and what
 * it points to are borrowed for the call. May call this module (see above).
 */
typedef void (*rt_presence_cb)(const rt_presence_entry_t *e, rt_presence_change_t change,
                               void *user_data);

/*
 * Told about one entry of a channel by rt_presence_foreach; `e` is borrowed
 * for the call. Returns 0 to go on, anything else to stop. Must not change
 * the presence object.
 */
typedef int (*rt_presence_each_cb)(const rt_presence_entry_t *e, void *user_data);

/*
 * Returns a new, empty presence object, or NULL on RT_ENOMEM. `limits` is
 * borrowed and copied; NULL means no limits and no expiry. Free with
 * rt_presence_free().
 */
rt_presence_t *rt_presence_new(const rt_presence_limits_t *limits);

/* Frees the object and every entry, without callbacks. NULL is a no-op. */
void rt_presence_free(rt_presence_t *p);

/*
 * Joins or updates the entry of `client_id` in `channel`, and refreshes its
 * expiry to mono_ms.
 * - No entry yet: a join, with joined_at = updated_at = wall_ms.
 * - An entry: an update; data and user_id are replaced, updated_at = wall_ms,
 *   joined_at is kept, and the entry keeps its place in the join order.
 * All inputs are borrowed and copied: channel[0..channel_len) (validated by
 * the caller; it must not contain NUL), client_id and user_id (NUL-terminated;
 * user_id may be NULL), data[0..data_len) (one JSON value, validated by the
 * caller; copied byte for byte).
 * On success returns 0, sets *change_out (JOIN or UPDATE) and *entry_out (a
 * view, see rt_presence_entry_t) when they are non-NULL. Errors, with a
 * message in *err when err is non-NULL, and the state unchanged:
 *   RT_EINVAL    client_id or data NULL, or data_len 0;
 *   RT_ETOOLARGE data_len over max_data_size;
 *   RT_EPRESENCEFULL    a join into a channel already at max_entries_per_channel
 *                (updates are always allowed);
 *   RT_ENOMEM.
 */
int rt_presence_set(rt_presence_t *p, const char *channel, size_t channel_len,
                    const char *client_id, const char *user_id, const char *data,
                    size_t data_len, int64_t wall_ms, int64_t mono_ms,
                    rt_presence_change_t *change_out, rt_presence_entry_t *entry_out,
                    rt_errbuf_t *err);

/*
 * Looks up the entry of client_id (borrowed) in channel[0..channel_len)
 * (borrowed). Returns 0 and a view in *entry_out (when non-NULL), or
 * RT_ENOENT.
 */
int rt_presence_get(const rt_presence_t *p, const char *channel, size_t channel_len,
                    const char *client_id, rt_presence_entry_t *entry_out);

/*
 * Removes the entry of client_id in channel[0..channel_len) (both borrowed):
 * the presence_leave command, or an unsubscribe. Calls cb (when non-NULL)
 * once with RT_PRESENCE_LEAVE and the removed entry before freeing it.
 * Returns 0, or RT_ENOENT when there was no such entry (cb not called).
 */
int rt_presence_remove(rt_presence_t *p, const char *channel, size_t channel_len,
                       const char *client_id, rt_presence_cb cb, void *user_data);

/*
 * Removes every entry of client_id (borrowed), as on a disconnect, calling cb
 * (when non-NULL) with RT_PRESENCE_LEAVE for each, in the order the client
 * joined them. O(entries of the client). Returns how many were removed.
 * Entries the callback adds for the same client are not removed by this call.
 */
size_t rt_presence_remove_client(rt_presence_t *p, const char *client_id, rt_presence_cb cb,
                                 void *user_data);

/*
 * Refreshes the expiry of every entry of client_id (borrowed) to mono_ms,
 * as when its connection answered a keep-alive. O(entries of the client);
 * an unknown client is a no-op. Data and updated_at do not change.
 */
void rt_presence_touch_client(rt_presence_t *p, const char *client_id, int64_t mono_ms);

/*
 * Removes every entry not refreshed within timeout_ms before mono_ms, oldest
 * first, calling cb (when non-NULL) with RT_PRESENCE_LEAVE for each. Costs
 * O(expired entries): it stops at the first live entry. With timeout_ms 0
 * nothing expires. Returns how many were removed.
 */
size_t rt_presence_sweep(rt_presence_t *p, int64_t mono_ms, rt_presence_cb cb, void *user_data);

/*
 * Entries the last rt_presence_sweep examined: the expired ones plus the
 * live one it stopped at, if any. For metrics and for the test that checks
 * the sweep's cost; 0 before the first sweep.
 */
size_t rt_presence_sweep_visited(const rt_presence_t *p);

/* Entries in channel[0..channel_len) (borrowed); 0 for an unknown channel. */
size_t rt_presence_count(const rt_presence_t *p, const char *channel, size_t channel_len);

/*
 * Calls cb for each entry of channel[0..channel_len) (borrowed) in join
 * order. Returns 0 when every entry was visited (or the channel has none),
 * or the first non-zero value cb returned, which stops the walk.
 */
int rt_presence_foreach(const rt_presence_t *p, const char *channel, size_t channel_len,
                        rt_presence_each_cb cb, void *user_data);

/* Channels with at least one entry. */
size_t rt_presence_channel_count(const rt_presence_t *p);

/* Entries in all channels. */
size_t rt_presence_total(const rt_presence_t *p);

/*
 * Appends the protocol's JSON form of e (borrowed) to out:
 *   {"clientId":"..","userId":"..","data":<data bytes verbatim>,
 *    "joinedAt":N,"updatedAt":N}
 * with userId left out when e->user_id is NULL and strings escaped by
 * rt_strbuf_append_json_string. Returns 0, or RT_ENOMEM with out as it was.
 */
int rt_presence_entry_json(const rt_presence_entry_t *e, rt_strbuf_t *out);

#endif
