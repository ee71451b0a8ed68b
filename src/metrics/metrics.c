#include "metrics/metrics.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const uint64_t latency_bounds[WSG_LATENCY_BUCKETS] = {
    10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 100000, 1000000,
};

static const uint64_t duration_bounds[WSG_DURATION_BUCKETS] = {
    100000,     1000000,    5000000,    10000000,   30000000,   60000000,
    300000000,  900000000,  1800000000, 3600000000, 21600000000, 86400000000,
};

const wsg_histogram_def wsg_latency_def = {latency_bounds, WSG_LATENCY_BUCKETS};
const wsg_histogram_def wsg_duration_def = {duration_bounds, WSG_DURATION_BUCKETS};

static inline void bump(_Atomic uint64_t *v, uint64_t n)
{
    atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

void wsg_observe(wsg_histogram *h, const wsg_histogram_def *def, uint64_t us)
{
    /* Buckets hold counts per range; the cumulative form is made when the
     * histogram is written. */
    size_t i = 0;
    while (i < def->count && us > def->bounds_us[i])
        i++;
    if (i < def->count)
        bump(&h->buckets[i], 1);
    bump(&h->count, 1);
    bump(&h->sum_us, us);
}

static int put(wsg_buf **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int put(wsg_buf **out, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    return wsg_buf_append(out, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

int wsg_prom_family(wsg_buf **out, const char *name, const char *type, const char *help)
{
    return put(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void format_value(char *out, size_t len, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, len, "%.0f", v);
    else
        snprintf(out, len, "%.9g", v);
}

int wsg_prom_sample(wsg_buf **out, const char *name, const char *labels, double value)
{
    char v[64];
    format_value(v, sizeof(v), value);
    if (labels[0])
        return put(out, "%s{%s} %s\n", name, labels, v);
    return put(out, "%s %s\n", name, v);
}

int wsg_prom_histogram(wsg_buf **out, const char *name, const char *labels,
                       const wsg_histogram_def *def, const uint64_t *buckets, uint64_t count,
                       uint64_t sum_us)
{
    const char *sep = labels[0] ? "," : "";
    uint64_t cumulative = 0;
    int rc = 0;
    for (size_t i = 0; i < def->count; i++) {
        char le[32];
        cumulative += buckets[i];
        format_value(le, sizeof(le), (double)def->bounds_us[i] / 1e6);
        rc |= put(out, "%s_bucket{%s%sle=\"%s\"} %llu\n", name, labels, sep, le,
                  (unsigned long long)cumulative);
    }
    rc |= put(out, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
              (unsigned long long)count);
    char sum[64];
    format_value(sum, sizeof(sum), (double)sum_us / 1e6);
    if (labels[0]) {
        rc |= put(out, "%s_sum{%s} %s\n", name, labels, sum);
        rc |= put(out, "%s_count{%s} %llu\n", name, labels, (unsigned long long)count);
    } else {
        rc |= put(out, "%s_sum %s\n", name, sum);
        rc |= put(out, "%s_count %llu\n", name, (unsigned long long)count);
    }
    return rc;
}

void wsg_prom_label_value(char *out, size_t outlen, const char *value)
{
    size_t o = 0;
    for (const char *c = value; *c && o + 3 < outlen; c++) {
        if (*c == '\\' || *c == '"') {
            out[o++] = '\\';
            out[o++] = *c;
        } else if (*c == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *c;
        }
    }
    out[o] = '\0';
}
