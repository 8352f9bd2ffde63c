/*
 * Library logging: silent unless an embedder installs a sink (realtimed
 * installs a stderr sink with time and level). Used at the edges only; the
 * pure core returns errors instead of logging.
 */
#ifndef RT_CORE_LOG_H
#define RT_CORE_LOG_H

#include "realtime/realtime.h"

/* True when a line at `level` would reach the sink (skip formatting otherwise). */
int rt_log_enabled(rt_log_level_t level);
void rt_log(rt_log_level_t level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
