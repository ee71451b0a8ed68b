/* Active health checks of configured backends (see health.c). */
#ifndef WSG_HEALTH_H
#define WSG_HEALTH_H

#include <uv.h>

#include "config/config.h"
#include "registry/registry.h"

typedef struct wsg_health wsg_health;

/* Starts checking every configured backend on loop, as WSGATE_HEALTH_CHECK
 * says; NULL when checks are off. */
wsg_health *wsg_health_start(uv_loop_t *loop, wsg_registry *r, const wsg_config *cfg);

/* Stops; checks under way end on their own, freeing themselves. */
void wsg_health_stop(wsg_health *h);

#endif
