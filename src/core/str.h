/* Pointer + length strings for the hot path: no NUL scanning, no copies.
 * A wsg_str never owns its bytes; whoever made it says how long they live. */
#ifndef WSG_CORE_STR_H
#define WSG_CORE_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct wsg_str {
    const char *p;
    size_t len;
} wsg_str;

#define WSG_STR(lit) ((wsg_str){(lit), sizeof(lit) - 1})

static inline wsg_str wsg_str_make(const char *p, size_t len)
{
    return (wsg_str){p, len};
}

static inline wsg_str wsg_str_cstr(const char *s)
{
    return (wsg_str){s, s ? strlen(s) : 0};
}

static inline char wsg_ascii_lower(char c)
{
    return (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
}

static inline bool wsg_str_eq(wsg_str a, wsg_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* ASCII case-insensitive equality, as HTTP wants for names and tokens. */
bool wsg_str_eq_nocase(wsg_str a, wsg_str b);

bool wsg_str_starts_with(wsg_str s, wsg_str prefix);

/* Removes spaces and horizontal tabs from both ends (HTTP's OWS). */
wsg_str wsg_str_trim(wsg_str s);

/* Splits off the text before the first `sep`: returns it trimmed, and
 * advances *rest past the separator (or to empty when there is none). */
wsg_str wsg_str_next_item(wsg_str *rest, char sep);

/* True when the comma-separated list holds `token`, compared ignoring
 * ASCII case: `Connection: keep-alive, Upgrade` has the token "upgrade". */
bool wsg_str_list_has_token(wsg_str list, wsg_str token);

/* Parses an unsigned decimal number with no sign, spaces or suffix.
 * Returns 0 and sets *out, or -1 on anything else or on overflow. */
int wsg_str_to_u64(wsg_str s, unsigned long long *out);

#endif
