/*
 * Server events (the seed's "Observable"): listeners per event type, run in
 * registration order, on the thread of the worker where the event happens,
 * one at a time (the server lock is held). A listener may remove itself or
 * others while an event is being dispatched: removal then only clears the
 * callback, and the node is freed once the outermost dispatch has finished,
 * so no dispatch walks freed memory.
 */
#include "alloc.h"
#include "server_internal.h"

struct rt_listener_s {
  rt_event_cb cb;              /* NULL once removed during a dispatch */
  void *user_data;             /* passed to cb */
  rt_event_type_t type;        /* which list it is on */
  struct rt_listener_s *next;  /* next listener of the same type */
};

int rt_server_on(rt_server_t *srv, rt_event_type_t type, rt_event_cb cb, void *user_data,
                 rt_listener_t **out) {
  *out = NULL;
  if (cb == NULL || (unsigned)type >= RT_EVENT__COUNT) return RT_EINVAL;
  rt_listener_t *l = rt_calloc(1, sizeof(*l));
  if (l == NULL) return RT_ENOMEM;
  l->cb = cb;
  l->user_data = user_data;
  l->type = type;
  rt_srv_lock(srv);
  rt_listener_t **tail = &srv->listeners[type];
  while (*tail != NULL) tail = &(*tail)->next;
  *tail = l;
  rt_srv_unlock(srv);
  *out = l;
  return 0;
}

/* Frees the nodes whose callback was cleared during a dispatch. */
static void sweep(rt_server_t *srv, rt_event_type_t type) {
  rt_listener_t **p = &srv->listeners[type];
  while (*p != NULL) {
    if ((*p)->cb == NULL) {
      rt_listener_t *dead = *p;
      *p = dead->next;
      rt_free(dead);
    } else {
      p = &(*p)->next;
    }
  }
}

void rt_server_off(rt_server_t *srv, rt_listener_t *l) {
  if (l == NULL) return;
  rt_srv_lock(srv);
  l->cb = NULL;
  if (srv->dispatching == 0) sweep(srv, l->type);
  rt_srv_unlock(srv);
}

void rt_events_emit(rt_server_t *srv, const rt_event_t *ev) {
  if (srv->listeners[ev->type] == NULL) return;
  srv->dispatching++;
  for (rt_listener_t *l = srv->listeners[ev->type]; l != NULL; l = l->next)
    if (l->cb != NULL) l->cb(ev, l->user_data);
  if (--srv->dispatching == 0)
    for (int t = 0; t < RT_EVENT__COUNT; t++) sweep(srv, (rt_event_type_t)t);
}

void rt_events_free(rt_server_t *srv) {
  for (int t = 0; t < RT_EVENT__COUNT; t++) {
    rt_listener_t *l = srv->listeners[t];
    while (l != NULL) {
      rt_listener_t *next = l->next;
      rt_free(l);
      l = next;
    }
    srv->listeners[t] = NULL;
  }
}
