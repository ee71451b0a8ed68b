/* Intrusive doubly linked list. A list head is a wsg_list whose next and
 * prev point at itself when empty; an element embeds a wsg_list and finds
 * its container with wsg_container_of. A node that is in no list has both
 * pointers NULL, so membership is a cheap test. */
#ifndef WSG_CORE_LIST_H
#define WSG_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct wsg_list {
    struct wsg_list *next;
    struct wsg_list *prev;
} wsg_list;

#define wsg_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void wsg_list_init(wsg_list *head)
{
    head->next = head;
    head->prev = head;
}

static inline bool wsg_list_empty(const wsg_list *head)
{
    return head->next == head;
}

static inline bool wsg_list_linked(const wsg_list *node)
{
    return node->next != NULL;
}

static inline void wsg_list_insert_tail(wsg_list *head, wsg_list *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

static inline void wsg_list_remove(wsg_list *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->next = NULL;
    node->prev = NULL;
}

#endif
