/* A log-linear latency histogram in the manner of HdrHistogram: values in
 * microseconds, exact below 256 us, then 128 buckets per power of two, so
 * any recorded value reads back within 0.8%. It spans 1 us to 2^36 us
 * (19 hours); longer values are counted at the top. Histograms from several
 * processes merge by adding buckets.
 *
 * Layout of the bucket index:
 *
 *   0 .. 255              one bucket per microsecond
 *   256 + 128*(k-1) + j   values [(128 + j) << k, (129 + j) << k), k >= 1
 *
 * A histogram has no pointers, so it crosses a pipe as plain bytes between
 * processes forked from the same binary.
 */
#ifndef LG_HIST_H
#define LG_HIST_H

#include <stdint.h>

#define LG_HIST_SUB_BITS 8
#define LG_HIST_TOP_BITS 36
#define LG_HIST_BUCKETS                                                                            \
    ((1u << LG_HIST_SUB_BITS) +                                                                    \
     (LG_HIST_TOP_BITS - LG_HIST_SUB_BITS) * (1u << (LG_HIST_SUB_BITS - 1)))

typedef struct lg_hist {
    uint64_t count;
    uint64_t sum; /* microseconds, for the mean */
    uint64_t min;
    uint64_t max; /* exact, unlike the buckets */
    uint64_t buckets[LG_HIST_BUCKETS];
} lg_hist;

void lg_hist_init(lg_hist *h);

void lg_hist_record(lg_hist *h, uint64_t us);

/* Adds src's counts to dst. */
void lg_hist_merge(lg_hist *dst, const lg_hist *src);

/* The value at percentile p (0 < p <= 100): the highest value that falls in
 * the bucket holding the ceil(p% * count)-th smallest value, never above the
 * exact maximum. 0 for an empty histogram. */
uint64_t lg_hist_percentile(const lg_hist *h, double p);

/* Bucket arithmetic, exposed for tests. */
uint32_t lg_hist_index(uint64_t us);
uint64_t lg_hist_highest(uint32_t index);

#endif
