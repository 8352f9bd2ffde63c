/*
 * The hub: channels, subscriptions and fan-out, with no knowledge of sockets.
 *
 * A subscriber is an rt_peer_t embedded in whatever owns it (a connection, a
 * server-side subscription, a test's recorder) with an ops table. A publish
 * encodes the message frame once and hands the same bytes to every
 * subscriber's deliver(); the peer takes its own reference if it keeps them.
 *
 * Batches: the messages of one channel published (or delivered) in one
 * loop iteration are encoded back to back into one "batch" frame of the
 * hub, so a subscriber's queue can hold them as one range and send them as
 * one iovec (rt_sendq_append). The server closes the open batches once per
 * iteration (rt_hub_close_batches). A hub's batches are its own: with
 * several workers, each worker's hub (and thread) has its own.
 *
 * Re-entrancy: deliver() may subscribe, unsubscribe (any peer, including
 * itself) or publish (also to the same channel). Removals during a fan-out
 * are deferred to its end; peers added during a fan-out get later messages only.
 * A channel exists while it has subscribers.
 */
#ifndef RT_CORE_HUB_H
#define RT_CORE_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "realtime/realtime.h"

typedef int64_t (*rt_clock_fn)(void *clock_data); /* ms since the epoch */

typedef struct rt_hub_s rt_hub_t;
typedef struct rt_peer_s rt_peer_t;
typedef struct rt_sub_s rt_sub_t;

typedef struct {
  const char *channel;  /* NUL-terminated, borrowed */
  size_t channel_len;
  const char *data;     /* exact published JSON bytes, borrowed, not NUL-terminated */
  size_t data_len;
  rt_msg_meta_t meta;   /* publisher id and time */
} rt_hub_msg_t;

typedef struct {
  /*
   * Delivers one message. `wire` is the complete {"type":"message",...}
   * text frame shared by all subscribers: a slice of the channel's batch
   * frame, whose other bytes are other messages (borrowed: rt_frame_ref
   * wire->frame to keep it). The bytes of the slice never change.
   * Returns 0 when delivered (counted), non-zero when refused (e.g. the
   * peer is over its send cap and is being evicted by its owner).
   */
  int (*deliver)(rt_peer_t *peer, const rt_slice_t *wire, const rt_hub_msg_t *msg);
  /*
   * Optional: takes a server push that is not a published message (presence
   * changes). Same contract as deliver; NULL for peers that want none
   * (server-side subscriptions learn of presence through server events).
   */
  int (*push)(rt_peer_t *peer, rt_frame_t *frame);
} rt_peer_ops_t;

struct rt_peer_s {
  const rt_peer_ops_t *ops; /* how to deliver */
  uint64_t id;              /* publisher id reported in meta (client id; 0 = server) */
  rt_sub_t *_subs;          /* this peer's subscriptions (hub-owned list) */
  size_t _nsubs;            /* length of _subs */
};

/* Returns a new hub or NULL. `clock` may be NULL (wall clock). */
rt_hub_t *rt_hub_new(rt_clock_fn clock, void *clock_data);
/* Frees all channels and subscriptions; peers must not be used with it after. NULL ok. */
void rt_hub_free(rt_hub_t *hub);

void rt_peer_init(rt_peer_t *peer, const rt_peer_ops_t *ops, uint64_t id);
static inline size_t rt_peer_subscription_count(const rt_peer_t *peer) { return peer->_nsubs; }

/* Subscribes peer to channel (validated by the caller). Returns 0, RT_EEXIST or RT_ENOMEM. */
int rt_hub_subscribe(rt_hub_t *hub, rt_peer_t *peer, const char *channel, size_t len);
/* Returns 0, or RT_ENOENT when the peer was not subscribed. */
int rt_hub_unsubscribe(rt_hub_t *hub, rt_peer_t *peer, const char *channel, size_t len);
/* Drops every subscription of the peer (on disconnect). */
void rt_hub_unsubscribe_all(rt_hub_t *hub, rt_peer_t *peer);
/* 1 when peer is subscribed to channel. */
int rt_hub_is_subscribed(rt_hub_t *hub, const rt_peer_t *peer, const char *channel, size_t len);

/*
 * Publishes data (one valid JSON value, validated by the caller) to channel.
 * Returns the number of peers that accepted the delivery (>= 0; 0 when the
 * channel does not exist), RT_ENOMEM, or RT_ETOOLARGE (a frame of 2 GiB).
 */
int64_t rt_hub_publish(rt_hub_t *hub, const char *channel, size_t channel_len, const char *data,
                       size_t data_len, uint64_t publisher_id);

/*
 * The fan-out of a message already encoded (by the server, for every
 * worker): `frame` (borrowed) is the rt_proto_message of msg, which gives
 * the channel, data and meta. Its wire bytes are copied to the end of this
 * hub's open batch of the channel, as a publish would have encoded them
 * there; when no batch applies (an isolated message on a cold channel, one
 * bigger than a batch) subscribers get a slice of `frame` itself, which
 * they may keep (a reference each). Counted like a publish on this hub's
 * channel (only its deliveries with a shared table, see rt_hub_stats_t).
 * Returns the deliveries (0 when the channel does not exist here), or
 * RT_ENOMEM when the channel's statistics could not be allocated (then
 * nobody got it; never with a shared table), or RT_ETOOLARGE (2 GiB).
 */
int64_t rt_hub_deliver(rt_hub_t *hub, rt_frame_t *frame, const rt_hub_msg_t *msg);
/* Subscribers of channel right now (0 when it does not exist). */
size_t rt_hub_subscriber_count(const rt_hub_t *hub, const char *channel, size_t len);

/*
 * Closes every open batch: the hub drops its references (the frames live on
 * in the queues that hold slices of them) and the next publish on each
 * channel starts a new frame. Each worker calls it on its own hub once per
 * loop iteration, when it flushes (flush before sleep, rt_flush_pending;
 * no server lock needed: only the hub's own thread touches its batches), so
 * a batch holds at most one iteration's messages and no frame is kept for a
 * channel gone quiet.
 * Cheap when nothing is open; safe at any time (a fan-out in progress holds
 * its own reference).
 */
void rt_hub_close_batches(rt_hub_t *hub);

/*
 * Hands a prebuilt frame (borrowed) to every subscriber of channel whose ops
 * have push, with the same re-entrancy rules as a publish. Not counted as a
 * message. Returns the number of peers that took it.
 */
int64_t rt_hub_push(rt_hub_t *hub, const char *channel, size_t channel_len, rt_frame_t *frame);

/*
 * Statistics of one channel (name non-NULL) or all (name NULL), as a new
 * array for rt_channel_stats_free(). Returns 0, RT_ENOENT or RT_ENOMEM.
 */
int rt_hub_channel_stats(rt_hub_t *hub, const char *name, rt_channel_stats_t **out,
                         size_t *count);
size_t rt_hub_channel_count(const rt_hub_t *hub);
/* Returns a new array of the peer's channel names (each rt_malloc'd). */
int rt_hub_peer_channels(const rt_peer_t *peer, char ***names, size_t *count);
/*
 * Per-channel statistics shared by several hubs (one per worker): each
 * channel's counters live in one record per name, alive while any hub has
 * the channel, so the figures are those of one hub holding every
 * subscriber. A hub using it counts deliveries only; the publisher counts
 * each publish once with rt_hub_stats_publish. Not thread-safe: callers
 * serialise every hub sharing it (the server lock).
 */
typedef struct rt_hub_stats_s rt_hub_stats_t;
rt_hub_stats_t *rt_hub_stats_new(void);
/* Frees the table; every hub sharing it must have been freed. NULL ok. */
void rt_hub_stats_free(rt_hub_stats_t *t);
/* Makes hub keep its channels' counters in `shared` (call while the hub has no channel). */
void rt_hub_share_stats(rt_hub_t *hub, rt_hub_stats_t *shared);
/* Counts one publish on channel; returns 1, or 0 when no hub has the channel. */
int rt_hub_stats_publish(rt_hub_stats_t *t, const char *channel, size_t len, size_t data_len,
                         int64_t now);

/* Totals since the hub was created (with a shared table, `published` stays 0). */
void rt_hub_totals(const rt_hub_t *hub, uint64_t *published, uint64_t *delivered);

#endif
