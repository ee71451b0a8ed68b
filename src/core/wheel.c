#include "core/wheel.h"

void wsg_wheel_init(wsg_wheel *w, uint64_t tick_ms, uint64_t now)
{
    for (int i = 0; i < WSG_WHEEL_SLOTS; i++)
        wsg_list_init(&w->slots[i]);
    w->tick_ms = tick_ms ? tick_ms : 1;
    w->cur = now / w->tick_ms;
    w->count = 0;
}

static wsg_list *slot_for(wsg_wheel *w, uint64_t due)
{
    /* Round up so that a node never fires before its due time. */
    uint64_t tick = (due + w->tick_ms - 1) / w->tick_ms;
    if (tick <= w->cur)
        tick = w->cur + 1;
    else if (tick - w->cur >= WSG_WHEEL_SLOTS)
        tick = w->cur + WSG_WHEEL_SLOTS - 1;
    return &w->slots[tick % WSG_WHEEL_SLOTS];
}

void wsg_wheel_schedule(wsg_wheel *w, wsg_wheel_node *node, uint64_t due)
{
    if (wsg_list_linked(&node->link))
        wsg_list_remove(&node->link);
    else
        w->count++;
    node->due = due;
    wsg_list_insert_tail(slot_for(w, due), &node->link);
}

void wsg_wheel_cancel(wsg_wheel *w, wsg_wheel_node *node)
{
    if (!wsg_list_linked(&node->link))
        return;
    wsg_list_remove(&node->link);
    w->count--;
}

void wsg_wheel_advance(wsg_wheel *w, uint64_t now, wsg_wheel_fire_cb cb, void *ctx)
{
    uint64_t target = now / w->tick_ms;
    /* After a long stall one full turn visits every slot. */
    if (target > w->cur + WSG_WHEEL_SLOTS)
        w->cur = target - WSG_WHEEL_SLOTS;
    while (w->cur < target) {
        w->cur++;
        wsg_list *slot = &w->slots[w->cur % WSG_WHEEL_SLOTS];
        /* Detach the slot first: callbacks may schedule into it again. */
        wsg_list pending;
        if (wsg_list_empty(slot))
            continue;
        pending.next = slot->next;
        pending.prev = slot->prev;
        pending.next->prev = &pending;
        pending.prev->next = &pending;
        wsg_list_init(slot);
        while (!wsg_list_empty(&pending)) {
            wsg_wheel_node *node = wsg_container_of(pending.next, wsg_wheel_node, link);
            wsg_list_remove(&node->link);
            if (node->due > now) {
                /* Parked in the farthest slot, or due later within this
                 * tick: put it back where it belongs. */
                wsg_list_insert_tail(slot_for(w, node->due), &node->link);
                continue;
            }
            w->count--;
            cb(node, ctx);
        }
    }
}
