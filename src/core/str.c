#include "core/str.h"

#include <limits.h>

bool wsg_str_eq_nocase(wsg_str a, wsg_str b)
{
    if (a.len != b.len)
        return false;
    for (size_t i = 0; i < a.len; i++) {
        if (wsg_ascii_lower(a.p[i]) != wsg_ascii_lower(b.p[i]))
            return false;
    }
    return true;
}

bool wsg_str_starts_with(wsg_str s, wsg_str prefix)
{
    return s.len >= prefix.len && memcmp(s.p, prefix.p, prefix.len) == 0;
}

wsg_str wsg_str_trim(wsg_str s)
{
    while (s.len > 0 && (s.p[0] == ' ' || s.p[0] == '\t')) {
        s.p++;
        s.len--;
    }
    while (s.len > 0 && (s.p[s.len - 1] == ' ' || s.p[s.len - 1] == '\t'))
        s.len--;
    return s;
}

wsg_str wsg_str_next_item(wsg_str *rest, char sep)
{
    const char *hit = rest->len ? memchr(rest->p, sep, rest->len) : NULL;
    wsg_str item;
    if (hit == NULL) {
        item = *rest;
        *rest = wsg_str_make(rest->p + rest->len, 0);
    } else {
        item = wsg_str_make(rest->p, (size_t)(hit - rest->p));
        rest->len -= item.len + 1;
        rest->p = hit + 1;
    }
    return wsg_str_trim(item);
}

bool wsg_str_list_has_token(wsg_str list, wsg_str token)
{
    while (list.len > 0) {
        if (wsg_str_eq_nocase(wsg_str_next_item(&list, ','), token))
            return true;
    }
    return false;
}

int wsg_str_to_u64(wsg_str s, unsigned long long *out)
{
    unsigned long long v = 0;
    if (s.len == 0)
        return -1;
    for (size_t i = 0; i < s.len; i++) {
        unsigned d = (unsigned)(s.p[i] - '0');
        if (d > 9)
            return -1;
        if (v > (ULLONG_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}
