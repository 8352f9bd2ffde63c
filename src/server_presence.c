/*
 * Presence in the server: every change made to the pure presence module
 * (src/core/presence.c) goes through here, so that each one is pushed to the
 * channel's WebSocket subscribers as presence_join / presence_update /
 * presence_leave and reported to RT_EVENT_PRESENCE listeners, in the order
 * the changes happen. Also the C API calls of the seed (updatePresence,
 * getPresence) and presence_get's reply. Presence is one table for all
 * workers (under the server lock); each push goes to every worker's
 * subscribers of the channel.
 */
#include <stdio.h>
#include <string.h>

#include "alloc.h"
#include "channel.h"
#include "proto.h"
#include "server_internal.h"
#include "worker.h"

static const char *const push_type[] = {
    [RT_PRESENCE_JOIN] = "presence_join",
    [RT_PRESENCE_UPDATE] = "presence_update",
    [RT_PRESENCE_LEAVE] = "presence_leave",
};

/* {"type":"presence_<change>","channel":"<ch>","entry":{...}} as one sealed frame. */
static rt_frame_t *push_frame(const rt_presence_entry_t *e, rt_presence_change_t change) {
  rt_strbuf_t b = {0};
  const char *t = push_type[change];
  int ok = rt_strbuf_append(&b, "{\"type\":\"", 9) == 0 && rt_strbuf_append(&b, t, strlen(t)) == 0 &&
           rt_strbuf_append(&b, "\",\"channel\":\"", 13) == 0 &&
           rt_strbuf_append(&b, e->channel, e->channel_len) == 0 &&
           rt_strbuf_append(&b, "\",\"entry\":", 10) == 0 && rt_presence_entry_json(e, &b) == 0 &&
           rt_strbuf_append(&b, "}", 1) == 0;
  return rt_strbuf_to_frame(&b, ok);
}

static void notify(rt_server_t *srv, const rt_presence_entry_t *e, rt_presence_change_t change) {
  rt_frame_t *f = push_frame(e, change);
  if (f != NULL) {
    rt_workers_push(srv, e->channel, e->channel_len, f); /* every worker's subscribers */
    rt_frame_unref(f);
  }
  char channel[RT_CHANNEL_MAX + 1];
  memcpy(channel, e->channel, e->channel_len);
  channel[e->channel_len] = '\0';
  rt_event_t ev = {.type = RT_EVENT_PRESENCE,
                   .channel = channel,
                   .user_id = e->user_id,
                   .presence_change = (int)change,
                   .presence_client = e->client_id,
                   .data = e->data,
                   .data_len = e->data_len};
  rt_events_emit(srv, &ev);
}

static void on_removed(const rt_presence_entry_t *e, rt_presence_change_t change, void *ud) {
  notify(ud, e, change);
}

int rt_srv_presence_set(rt_server_t *srv, const char *channel, size_t len, const char *client_id,
                        const char *user_id, const char *data, size_t data_len, rt_errbuf_t *err) {
  rt_presence_change_t change;
  rt_presence_entry_t e;
  int r = rt_presence_set(srv->presence, channel, len, client_id, user_id, data, data_len,
                          rt_wall_ms(), rt_mono_ms(), &change, &e, err);
  if (r == 0) notify(srv, &e, change);
  return r;
}

int rt_srv_presence_leave(rt_server_t *srv, const char *channel, size_t len,
                          const char *client_id) {
  return rt_presence_remove(srv->presence, channel, len, client_id, on_removed, srv);
}

void rt_srv_presence_drop_client(rt_server_t *srv, const char *client_id) {
  rt_presence_remove_client(srv->presence, client_id, on_removed, srv);
}

void rt_srv_presence_sweep(rt_server_t *srv) {
  rt_presence_sweep(srv->presence, rt_mono_ms(), on_removed, srv);
}

/* ------------------------------------------------------------- public API */

int rt_server_update_presence(rt_server_t *srv, const char *client_id, const char *channel,
                              const char *json, size_t len) {
  if (client_id == NULL || client_id[0] == '\0' || json == NULL) return RT_EINVAL;
  if (channel == NULL || !rt_channel_valid(channel, strlen(channel))) return RT_ECHANNEL;
  size_t start, vlen;
  int r = rt_json_validate(json, len, srv->cfg.max_json_depth, &start, &vlen, NULL);
  if (r != 0) return r;
  rt_srv_enter(srv);
  r = rt_srv_presence_set(srv, channel, strlen(channel), client_id, NULL, json + start, vlen, NULL);
  rt_srv_unlock(srv);
  return r;
}

int rt_server_remove_presence(rt_server_t *srv, const char *client_id, const char *channel) {
  if (client_id == NULL || channel == NULL) return RT_EINVAL;
  rt_srv_enter(srv);
  int r = rt_srv_presence_leave(srv, channel, strlen(channel), client_id);
  rt_srv_unlock(srv);
  return r;
}

typedef struct {
  rt_presence_info_t *arr; /* output, sized by rt_presence_count */
  size_t n;                /* filled so far */
} collect_t;

static char *dup_or_null(const char *s) { return s != NULL ? rt_strdup(s) : NULL; }

static int collect(const rt_presence_entry_t *e, void *ud) {
  collect_t *c = ud;
  rt_presence_info_t *pi = &c->arr[c->n];
  pi->client_id = rt_strdup(e->client_id);
  pi->user_id = dup_or_null(e->user_id);
  pi->data = rt_strndup(e->data, e->data_len);
  pi->joined_at_ms = e->joined_at_ms;
  pi->updated_at_ms = e->updated_at_ms;
  c->n++;
  return pi->client_id == NULL || pi->data == NULL || (e->user_id != NULL && pi->user_id == NULL);
}

static int get_presence(rt_server_t *srv, const char *channel, rt_presence_info_t **out,
                        size_t *count) {
  size_t n = rt_presence_count(srv->presence, channel, strlen(channel));
  if (n == 0) return 0;
  collect_t c = {rt_calloc(n, sizeof(rt_presence_info_t)), 0};
  if (c.arr == NULL) return RT_ENOMEM;
  if (rt_presence_foreach(srv->presence, channel, strlen(channel), collect, &c) != 0) {
    rt_presence_info_free(c.arr, c.n);
    return RT_ENOMEM;
  }
  *out = c.arr;
  *count = c.n;
  return 0;
}

int rt_server_get_presence(rt_server_t *srv, const char *channel, rt_presence_info_t **out,
                           size_t *count) {
  *out = NULL;
  *count = 0;
  if (channel == NULL) return RT_EINVAL;
  rt_srv_lock(srv);
  int r = get_presence(srv, channel, out, count);
  rt_srv_unlock(srv);
  return r;
}

void rt_presence_info_free(rt_presence_info_t *info, size_t count) {
  if (info == NULL) return;
  for (size_t i = 0; i < count; i++) {
    rt_free(info[i].client_id);
    rt_free(info[i].user_id);
    rt_free(info[i].data);
  }
  rt_free(info);
}

static int append_entry(const rt_presence_entry_t *e, void *ud) {
  rt_strbuf_t *b = ud;
  if (b->len > 0 && b->p[b->len - 1] == '}' && rt_strbuf_append(b, ",", 1) != 0) return 1;
  return rt_presence_entry_json(e, b) != 0;
}

/* {"type":"ack","id":N,"entries":[...]} for presence_get. */
rt_frame_t *rt_srv_presence_list(rt_server_t *srv, const char *channel, size_t len, int has_id,
                                 int64_t id) {
  rt_strbuf_t b = {0};
  char head[64];
  int n = has_id ? snprintf(head, sizeof(head), "{\"type\":\"ack\",\"id\":%lld,\"entries\":[",
                            (long long)id)
                 : snprintf(head, sizeof(head), "{\"type\":\"ack\",\"entries\":[");
  int ok = rt_strbuf_append(&b, head, (size_t)n) == 0 &&
           rt_presence_foreach(srv->presence, channel, len, append_entry, &b) == 0 &&
           rt_strbuf_append(&b, "]}", 2) == 0;
  return rt_strbuf_to_frame(&b, ok);
}
