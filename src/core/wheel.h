/* A coarse timer wheel: one per worker thread, for idle timeouts, pings and
 * handshake deadlines, instead of one heap timer per connection.
 *
 *   slot:  0    1    2   ...  cur  cur+1 ...            WSG_WHEEL_SLOTS-1
 *        [ ]  [ ]  [ ]       [ ]  [n n]  ...                 [n]
 *                                   ^ due within the next tick
 *
 * Time is cut in ticks of `tick_ms`. A node due in k ticks sits in slot
 * (cur + k) mod SLOTS; a node due further away than the wheel spans sits in
 * the farthest slot and is put back when that slot comes round. Scheduling
 * and cancelling are O(1); advancing costs one step per elapsed tick plus one
 * per node that fires. Nodes fire at most one tick late, never early.
 *
 * The wheel owns no memory and reads no clock: callers embed a node in
 * their object and pass `now` in milliseconds (STYLE.md, habit 11).
 */
#ifndef WSG_CORE_WHEEL_H
#define WSG_CORE_WHEEL_H

#include <stdint.h>

#include "core/list.h"

#define WSG_WHEEL_SLOTS 512

typedef struct wsg_wheel_node {
    wsg_list link;  /* unlinked (NULL) when not scheduled */
    uint64_t due;   /* milliseconds, same clock as `now` */
} wsg_wheel_node;

typedef struct wsg_wheel {
    wsg_list slots[WSG_WHEEL_SLOTS];
    uint64_t tick_ms;
    uint64_t cur;       /* last tick processed */
    uint64_t count;     /* nodes scheduled */
} wsg_wheel;

/* Called for every node whose time has come; the node is already unlinked
 * and may be scheduled again or freed from inside the callback. */
typedef void (*wsg_wheel_fire_cb)(wsg_wheel_node *node, void *ctx);

void wsg_wheel_init(wsg_wheel *w, uint64_t tick_ms, uint64_t now);

/* (Re)schedules node to fire at `due`; a due time in the past fires at the
 * next tick. */
void wsg_wheel_schedule(wsg_wheel *w, wsg_wheel_node *node, uint64_t due);

/* Unschedules node; harmless when it is not scheduled. */
void wsg_wheel_cancel(wsg_wheel *w, wsg_wheel_node *node);

static inline int wsg_wheel_scheduled(const wsg_wheel_node *node)
{
    return wsg_list_linked(&node->link);
}

/* Fires every node due at or before `now`. */
void wsg_wheel_advance(wsg_wheel *w, uint64_t now, wsg_wheel_fire_cb cb, void *ctx);

#endif
