#include "realtime/realtime.h"

#define NAME_CASE_(code, name, msg) case RT_##code: return name;
#define MSG_CASE_(code, name, msg) case RT_##code: return msg;

const char *rt_err_name(int err) {
  switch (err) {
    case 0: return "ok";
    RT_ERRNO_MAP(NAME_CASE_)
    default: return "unknown_error";
  }
}

const char *rt_strerror(int err) {
  switch (err) {
    case 0: return "Success";
    RT_ERRNO_MAP(MSG_CASE_)
    default: return "Unknown error";
  }
}

#include <stdarg.h>
#include <stdio.h>

#include "errors.h"

int rt_errbuf_set(rt_errbuf_t *err, int code, const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
  }
  return code;
}
