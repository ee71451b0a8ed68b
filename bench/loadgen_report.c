/* Merging worker results and printing the JSON report (loadgen_report.h). */
#include "loadgen_report.h"

#include <string.h>

void lg_result_init(lg_result *r)
{
    memset(r, 0, sizeof(*r));
    lg_hist_init(&r->handshake);
    lg_hist_init(&r->rtt);
    lg_hist_init(&r->send_lag);
}

void lg_result_merge(lg_result *dst, const lg_result *src)
{
    dst->connected += src->connected;
    dst->dropped += src->dropped;
    for (int i = 0; i < LG_FAIL_KINDS; i++)
        dst->fail[i] += src->fail[i];
    dst->sent += src->sent;
    dst->received += src->received;
    dst->mismatches += src->mismatches;
    dst->gaps += src->gaps;
    dst->current += src->current;
    dst->skipped += src->skipped;
    dst->rss_kb += src->rss_kb;
    if (src->rss_kb_max > dst->rss_kb_max)
        dst->rss_kb_max = src->rss_kb_max;
    if (src->window_ns > dst->window_ns)
        dst->window_ns = src->window_ns;
    dst->procs += src->procs;
    dst->interrupted |= src->interrupted;
    lg_hist_merge(&dst->handshake, &src->handshake);
    lg_hist_merge(&dst->rtt, &src->rtt);
    lg_hist_merge(&dst->send_lag, &src->send_lag);
}

static uint64_t lost(const lg_result *r)
{
    return r->sent > r->received ? r->sent - r->received : 0;
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

static void json_hist(FILE *f, const char *name, const lg_hist *h)
{
    double mean = h->count ? (double)h->sum / (double)h->count / 1000.0 : 0.0;
    fprintf(f,
            "\"%s\":{\"count\":%llu,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
            "\"p999\":%.3f,\"max\":%.3f}",
            name, (unsigned long long)h->count, mean, lg_hist_percentile(h, 50) / 1000.0,
            lg_hist_percentile(h, 90) / 1000.0, lg_hist_percentile(h, 99) / 1000.0,
            lg_hist_percentile(h, 99.9) / 1000.0, h->max / 1000.0);
}

static void json_errors(FILE *f, const lg_result *r, const lg_run_info *info)
{
    fprintf(f,
            "\"errors\":{\"refused\":%llu,\"timeout\":%llu,\"addr_exhausted\":%llu,"
            "\"handshake\":%llu,\"other\":%llu,\"not_started\":%llu,\"lost_with_process\":%llu}",
            (unsigned long long)r->fail[LG_FAIL_REFUSED],
            (unsigned long long)r->fail[LG_FAIL_TIMEOUT], (unsigned long long)r->fail[LG_FAIL_ADDR],
            (unsigned long long)r->fail[LG_FAIL_HANDSHAKE],
            (unsigned long long)r->fail[LG_FAIL_OTHER],
            (unsigned long long)r->fail[LG_FAIL_NOT_STARTED], (unsigned long long)info->lost_conns);
}

void lg_report_json(FILE *f, const lg_config *cfg, const lg_result *r, const lg_run_info *info)
{
    bool echo = cfg->mode == LG_MODE_ECHO;
    uint64_t failed = cfg->connections > r->connected ? cfg->connections - r->connected : 0;
    double window = (double)r->window_ns / 1e9;
    fprintf(f, "{\"mode\":\"%s\",\"url\":", echo ? "echo" : "idle");
    json_string(f, cfg->url);
    fprintf(f, ",\"tls\":%s,\"deflate\":%s", cfg->tls ? "true" : "false",
            cfg->deflate ? "true" : "false");
    fprintf(f,
            ",\"connections\":%llu,\"procs\":%u,\"connected\":%llu,\"failed\":%llu,"
            "\"dropped\":%llu,",
            (unsigned long long)cfg->connections, cfg->procs, (unsigned long long)r->connected,
            (unsigned long long)failed, (unsigned long long)r->dropped);
    json_errors(f, r, info);
    fprintf(f, ",\"ramp_s\":%.3f,", info->ramp_s);
    json_hist(f, "handshake_ms", &r->handshake);
    fputc(',', f);
    json_hist(f, "rtt_ms", &r->rtt);
    fputc(',', f);
    json_hist(f, "send_lag_ms", &r->send_lag);
    fprintf(f,
            ",\"messages_sent\":%llu,\"messages_received\":%llu,\"lost\":%llu,"
            "\"mismatches\":%llu,\"gaps\":%llu,\"conns_last_echoed\":%llu,"
            "\"send_skipped\":%llu,\"duration_s\":%.3f,"
            "\"warmup_s\":%.3f,\"msgs_per_sec\":%.1f,\"target_rate\":%.1f,\"inflight\":%u,"
            "\"payload\":%u,",
            (unsigned long long)r->sent, (unsigned long long)r->received,
            (unsigned long long)lost(r), (unsigned long long)r->mismatches,
            (unsigned long long)r->gaps, (unsigned long long)r->current,
            (unsigned long long)r->skipped, window, echo ? cfg->warmup : 0.0,
            window > 0 ? (double)r->received / window : 0.0, cfg->rate, cfg->inflight,
            cfg->payload);
    fprintf(f,
            "\"rss_kb\":%llu,\"rss_kb_max_proc\":%llu,\"procs_reported\":%u,"
            "\"elapsed_s\":%.3f,\"timed_out\":%s,\"interrupted\":%s}\n",
            (unsigned long long)r->rss_kb, (unsigned long long)r->rss_kb_max, r->procs,
            info->elapsed_s, info->timed_out ? "true" : "false", r->interrupted ? "true" : "false");
}

bool lg_report_ok(const lg_config *cfg, const lg_result *r, const lg_run_info *info)
{
    return r->connected == cfg->connections && r->dropped == 0 && r->mismatches == 0 &&
           lost(r) == 0 && !info->timed_out && !r->interrupted && r->procs == cfg->procs;
}
