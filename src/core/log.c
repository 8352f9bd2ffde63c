#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static rt_log_cb sink;
static void *sink_data;
static rt_log_level_t sink_min = RT_LOG_INFO;

void rt_log_set_sink(rt_log_cb cb, rt_log_level_t min_level, void *user_data) {
  sink = cb;
  sink_min = min_level;
  sink_data = user_data;
}

int rt_log_enabled(rt_log_level_t level) { return sink != NULL && level >= sink_min; }

void rt_log(rt_log_level_t level, const char *fmt, ...) {
  if (!rt_log_enabled(level)) return;
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof(line), fmt, ap);
  va_end(ap);
  sink(level, line, sink_data);
}
