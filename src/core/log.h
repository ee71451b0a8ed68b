/* Logging: one line per event, readable text by default or JSON lines.
 *
 * A line is a message plus `key=value` fields:
 *
 *   wsg_log(WSG_LOG_INFO, "connection closed", "conn=%llu code=%u", id, code);
 *
 *   text: 2026-11-22T01:22:36.123Z info  connection closed conn=42 code=1000
 *   json: {"time":"2026-11-22T01:22:36.123Z","level":"info",
 *          "msg":"connection closed","conn":42,"code":1000}
 *
 * Values that may hold spaces or come from peers must be passed through
 * wsg_log_quote first, so that a line stays one line and parses back into
 * the same fields. The logger is configured once at start and is read-only
 * afterwards, so every thread may log; each line is one write(2).
 */
#ifndef WSG_CORE_LOG_H
#define WSG_CORE_LOG_H

#include <stdbool.h>
#include <stddef.h>

typedef enum wsg_log_level {
    WSG_LOG_ERROR = 0,
    WSG_LOG_WARN = 1,
    WSG_LOG_INFO = 2,
    WSG_LOG_DEBUG = 3,
} wsg_log_level;

typedef enum wsg_log_format {
    WSG_LOG_TEXT = 0,
    WSG_LOG_JSON = 1,
} wsg_log_format;

void wsg_log_setup(wsg_log_level level, wsg_log_format format, int fd);

static inline bool wsg_log_enabled(wsg_log_level level);

/* Parses "error", "warn", "info" or "debug". Returns 0, or -1. */
int wsg_log_level_parse(const char *name, wsg_log_level *out);

void wsg_log(wsg_log_level level, const char *msg, const char *fields_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes `src` (n bytes, any content) as one field value into out: bytes
 * outside printable ASCII and the quote and backslash become \xNN, and
 * the whole is wrapped in double quotes. Truncates to fit; returns out. */
char *wsg_log_quote(char *out, size_t outlen, const char *src, size_t n);

/* Implementation detail of wsg_log_enabled, for the inline test. */
extern wsg_log_level wsg_log_threshold;

static inline bool wsg_log_enabled(wsg_log_level level)
{
    return level <= wsg_log_threshold;
}

#define wsg_log_error(...) wsg_log(WSG_LOG_ERROR, __VA_ARGS__)
#define wsg_log_warn(...) wsg_log(WSG_LOG_WARN, __VA_ARGS__)
#define wsg_log_info(...) wsg_log(WSG_LOG_INFO, __VA_ARGS__)
#define wsg_log_debug(...)                                                                         \
    do {                                                                                           \
        if (wsg_log_enabled(WSG_LOG_DEBUG))                                                        \
            wsg_log(WSG_LOG_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

#endif
