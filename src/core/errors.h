/* Internal error details: the RT_E* code is the return value, the text goes here. */
#ifndef RT_CORE_ERRORS_H
#define RT_CORE_ERRORS_H

#include "realtime/realtime.h"

typedef struct {
  char msg[256]; /* human text for the error reply or log; "" when unset */
} rt_errbuf_t;

/* Formats into err (if non-NULL) and returns `code`, so `return rt_errbuf_set(...)` reads well. */
int rt_errbuf_set(rt_errbuf_t *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
