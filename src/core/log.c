#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096

wsg_log_level wsg_log_threshold = WSG_LOG_INFO;
static wsg_log_format log_format = WSG_LOG_TEXT;
static int log_fd = 2;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void wsg_log_setup(wsg_log_level level, wsg_log_format format, int fd)
{
    wsg_log_threshold = level;
    log_format = format;
    log_fd = fd;
}

int wsg_log_level_parse(const char *name, wsg_log_level *out)
{
    for (int i = 0; i <= WSG_LOG_DEBUG; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (wsg_log_level)i;
            return 0;
        }
    }
    return -1;
}

char *wsg_log_quote(char *out, size_t outlen, const char *src, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (outlen < 3) {
        if (outlen)
            out[0] = '\0';
        return out;
    }
    out[o++] = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
        size_t need = plain ? 1 : 4;
        if (o + need + 2 > outlen)
            break;
        if (plain) {
            out[o++] = (char)c;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

static size_t format_time(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, outlen, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, outlen - n, ".%03ldZ", ts.tv_nsec / 1000000);
    return strlen(out);
}

/* Appends at most what fits; the line is cut rather than split. */
static void put(char *line, size_t *len, const char *s, size_t n)
{
    if (*len + n > LINE_MAX_BYTES - 2)
        n = LINE_MAX_BYTES - 2 - *len;
    memcpy(line + *len, s, n);
    *len += n;
}

static void put_json_string(char *line, size_t *len, const char *s, size_t n)
{
    put(line, len, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        char esc[8];
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' && i + 3 < n && s[i + 1] == 'x') {
            /* \xNN from wsg_log_quote becomes JSON's \u00NN. */
            snprintf(esc, sizeof(esc), "\\u00%c%c", s[i + 2], s[i + 3]);
            put(line, len, esc, 6);
            i += 3;
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put(line, len, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof(esc), "\\u%04x", c);
            put(line, len, esc, 6);
        } else {
            put(line, len, (const char *)&s[i], 1);
        }
    }
    put(line, len, "\"", 1);
}

static bool is_json_number(const char *s, size_t n)
{
    if (n == 0 || n > 18)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
    }
    return n == 1 || s[0] != '0';
}

/* Turns `k=v k="quoted v"` into `,"k":v,"k":"quoted v"`. */
static void put_json_fields(char *line, size_t *len, const char *f)
{
    while (*f) {
        while (*f == ' ')
            f++;
        const char *eq = strchr(f, '=');
        if (!*f || !eq)
            break;
        put(line, len, ",", 1);
        put_json_string(line, len, f, (size_t)(eq - f));
        put(line, len, ":", 1);
        const char *v = eq + 1;
        const char *end;
        if (*v == '"') {
            end = v + 1;
            while (*end && *end != '"')
                end++;
            put_json_string(line, len, v + 1, (size_t)(end - v - 1));
            f = *end ? end + 1 : end;
            continue;
        }
        end = v;
        while (*end && *end != ' ')
            end++;
        if (is_json_number(v, (size_t)(end - v)))
            put(line, len, v, (size_t)(end - v));
        else
            put_json_string(line, len, v, (size_t)(end - v));
        f = end;
    }
}

void wsg_log(wsg_log_level level, const char *msg, const char *fields_fmt, ...)
{
    char fields[LINE_MAX_BYTES];
    char line[LINE_MAX_BYTES];
    char ts[40];
    size_t len = 0;
    if (!wsg_log_enabled(level))
        return;
    fields[0] = '\0';
    if (fields_fmt && *fields_fmt) {
        va_list ap;
        va_start(ap, fields_fmt);
        vsnprintf(fields, sizeof(fields), fields_fmt, ap);
        va_end(ap);
    }
    size_t tslen = format_time(ts, sizeof(ts));
    const char *lvl = level_names[level];
    if (log_format == WSG_LOG_JSON) {
        put(line, &len, "{\"time\":\"", 9);
        put(line, &len, ts, tslen);
        put(line, &len, "\",\"level\":\"", 11);
        put(line, &len, lvl, strlen(lvl));
        put(line, &len, "\",\"msg\":", 8);
        put_json_string(line, &len, msg, strlen(msg));
        put_json_fields(line, &len, fields);
        put(line, &len, "}", 1);
    } else {
        put(line, &len, ts, tslen);
        put(line, &len, " ", 1);
        put(line, &len, lvl, strlen(lvl));
        put(line, &len, "     ", 6 - strlen(lvl));
        put(line, &len, msg, strlen(msg));
        if (fields[0]) {
            put(line, &len, " ", 1);
            put(line, &len, fields, strlen(fields));
        }
    }
    line[len++] = '\n';
    /* One write per line keeps lines whole when threads log at once. */
    ssize_t rc = write(log_fd, line, len);
    (void)rc;
}
