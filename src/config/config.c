#include "config/config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/log.h"

#define WSG_VERSION "0.1.0"
#define DEFAULT_ENV_FILE ".env.gateway"
#define ENV_FILE_VAR "WSGATE_ENV_FILE"

/* Where a value came from: a higher source replaces a lower one. */
typedef enum source {
    SRC_DEFAULT = 0,
    SRC_FILE = 1,
    SRC_ENV = 2,
    SRC_FLAG = 3,
} source;

typedef struct loader {
    wsg_config *cfg;
    uint8_t *set_by; /* the source of each option's value, by table index */
    char *err;
    size_t errlen;
} loader;

static const char *const seed_example_keys[] = {
    "your_secret_key_here",
    "your_secret_key",
    "change-this-secret-key",
    "AbCd1234EfGh5678IjKl9012MnOp3456",
};

static void *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (d == NULL) {
        fputs("wsgate: out of memory while reading the configuration\n", stderr);
        abort();
    }
    return d;
}

static void fail(loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(loader *ld, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ld->err, ld->errlen, fmt, ap);
    va_end(ap);
}

static int parse_uint(const char *s, uint64_t *out)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return -1;
    *out = v;
    return 0;
}

/* Splits "123unit" into a number and its unit; the unit may be empty. */
static int split_number(const char *s, uint64_t *num, const char **unit)
{
    char *end;
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    while (*end == ' ')
        end++;
    *num = v;
    *unit = end;
    return 0;
}

static int scale(uint64_t num, uint64_t mult, uint64_t *out)
{
    if (mult && num > UINT64_MAX / mult)
        return -1;
    *out = num * mult;
    return 0;
}

int wsg_config_parse_duration(const char *s, uint64_t *ms)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"", 1}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
    uint64_t num;
    const char *unit;
    if (split_number(s, &num, &unit) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(unit, units[i].unit) == 0)
            return scale(num, units[i].mult, ms);
    }
    return -1;
}

int wsg_config_parse_size(const char *s, uint64_t *bytes)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {
        {"", 1},          {"b", 1},           {"k", 1ULL << 10},  {"kb", 1ULL << 10},
        {"kib", 1ULL << 10}, {"m", 1ULL << 20}, {"mb", 1ULL << 20}, {"mib", 1ULL << 20},
        {"g", 1ULL << 30}, {"gb", 1ULL << 30}, {"gib", 1ULL << 30},
    };
    uint64_t num;
    const char *unit;
    if (split_number(s, &num, &unit) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcasecmp(unit, units[i].unit) == 0)
            return scale(num, units[i].mult, bytes);
    }
    return -1;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"true", "1", "yes", "on"};
    static const char *const no[] = {"false", "0", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static const char *source_name(source src, char *buf, size_t len, int line)
{
    switch (src) {
    case SRC_FLAG:
        return "on the command line";
    case SRC_ENV:
        return "in the environment";
    case SRC_FILE:
        snprintf(buf, len, "in the env file, line %d", line);
        return buf;
    default:
        return "as the built-in default";
    }
}

/* Writes a duration in the largest unit that shows it exactly: 86400000 is
 * "24h", 1500 is "1500ms". */
static void format_duration(uint64_t ms, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"h", 3600000}, {"m", 60000}, {"s", 1000}};
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (ms && ms % units[i].mult == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(ms / units[i].mult), units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%llums", (unsigned long long)ms);
}

/* "a|b|c" as "a, b or c". */
static void describe_choices(const char *choices, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = '\0';
    for (const char *p = choices; *p && at + 1 < len;) {
        size_t n = strcspn(p, "|");
        const char *sep = p[n] == '\0' ? "" : strchr(p + n + 1, '|') ? ", " : " or ";
        int w = snprintf(buf + at, len - at, "%.*s%s", (int)n, p, sep);
        at += w > 0 ? (size_t)w : 0;
        p += n + (p[n] == '|');
    }
}

/* Whether value is one of the words of "a|b|c". */
static bool is_choice(const char *choices, const char *value)
{
    size_t vlen = strlen(value);
    for (const char *p = choices; *p;) {
        size_t n = strcspn(p, "|");
        if (n == vlen && strncmp(p, value, n) == 0)
            return true;
        p += n + (p[n] == '|');
    }
    return false;
}

static void describe_expected(const wsg_option *o, char *buf, size_t len)
{
    char lo[32];
    char hi[32];
    switch (o->type) {
    case OPT_PORT:
        snprintf(buf, len, "a port number from %llu to %llu", (unsigned long long)o->min,
                 (unsigned long long)o->max);
        break;
    case OPT_UINT:
        snprintf(buf, len, "a whole number from %llu to %llu", (unsigned long long)o->min,
                 (unsigned long long)o->max);
        break;
    case OPT_DURATION:
        format_duration(o->min, lo, sizeof(lo));
        format_duration(o->max, hi, sizeof(hi));
        snprintf(buf, len,
                 "a duration like 250ms, 10s, 5m or 1h (a bare number is milliseconds) "
                 "from %s to %s",
                 lo, hi);
        break;
    case OPT_SIZE:
        snprintf(buf, len, "a size like 64KiB or 16MiB (a bare number is bytes) from %llu to "
                 "%llu bytes",
                 (unsigned long long)o->min, (unsigned long long)o->max);
        break;
    case OPT_BOOL:
        snprintf(buf, len, "true or false");
        break;
    case OPT_DOUBLE:
        snprintf(buf, len, "a number from %g to %g", (double)o->min / 1000, (double)o->max / 1000);
        break;
    case OPT_LOG_LEVEL:
        snprintf(buf, len, "error, warn, info or debug");
        break;
    case OPT_LOG_FORMAT:
        snprintf(buf, len, "text or json");
        break;
    case OPT_CHOICE:
        describe_choices(o->metavar, buf, len);
        break;
    default:
        snprintf(buf, len, "a value");
        break;
    }
}

static void list_free(char ***items, size_t *count)
{
    for (size_t i = 0; i < *count; i++)
        free((*items)[i]);
    free(*items);
    *items = NULL;
    *count = 0;
}

static void list_append(char ***items, size_t *count, const char *item)
{
    char **grown = realloc(*items, (*count + 1) * sizeof(**items));
    if (grown == NULL) {
        fputs("wsgate: out of memory while reading the configuration\n", stderr);
        abort();
    }
    grown[*count] = xstrdup(item);
    *items = grown;
    (*count)++;
}

/* Sets a list from one source: a flag appends one item, env and file
 * values are comma-separated. */
static void set_list(wsg_config *cfg, const char *value, source src)
{
    if (src != SRC_FLAG) {
        char *copy = xstrdup(value);
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            while (*tok == ' ')
                tok++;
            size_t n = strlen(tok);
            while (n > 0 && tok[n - 1] == ' ')
                tok[--n] = '\0';
            if (n > 0)
                list_append(&cfg->backends, &cfg->backend_count, tok);
        }
        free(copy);
        return;
    }
    list_append(&cfg->backends, &cfg->backend_count, value);
}

/* Parses `value` for option o into the config. Returns 0, or -1 with the
 * error message written. */
static int apply(loader *ld, const wsg_option *o, const char *value, source src, int line)
{
    size_t idx = (size_t)(o - wsg_options);
    char *field = (char *)ld->cfg + o->offset;
    uint64_t num = 0;
    bool ok = true;

    if (src < ld->set_by[idx])
        return 0;
    if (o->type == OPT_LIST && src > ld->set_by[idx])
        list_free(&ld->cfg->backends, &ld->cfg->backend_count);
    ld->set_by[idx] = (uint8_t)src;

    switch (o->type) {
    case OPT_STRING:
        free(*(char **)field);
        *(char **)field = value ? xstrdup(value) : NULL;
        return 0;
    case OPT_LIST:
        if (value)
            set_list(ld->cfg, value, src);
        return 0;
    case OPT_PORT:
    case OPT_UINT:
        ok = parse_uint(value, &num) == 0;
        break;
    case OPT_DURATION:
        ok = wsg_config_parse_duration(value, &num) == 0;
        break;
    case OPT_SIZE:
        ok = wsg_config_parse_size(value, &num) == 0;
        break;
    case OPT_BOOL:
        ok = parse_bool(value, (bool *)field) == 0;
        break;
    case OPT_DOUBLE: {
        char *end;
        double d = strtod(value, &end);
        ok = *value && *end == '\0' && d * 1000 >= (double)o->min && d * 1000 <= (double)o->max;
        if (ok)
            memcpy(field, &d, sizeof(d)); /* field points at a double member */
        break;
    }
    case OPT_LOG_LEVEL: {
        wsg_log_level lvl;
        ok = wsg_log_level_parse(value, &lvl) == 0;
        if (ok)
            *(int *)field = (int)lvl;
        break;
    }
    case OPT_CHOICE:
        ok = is_choice(o->metavar, value);
        if (ok) {
            free(*(char **)field);
            *(char **)field = xstrdup(value);
        }
        break;
    case OPT_LOG_FORMAT:
        ok = strcasecmp(value, "text") == 0 || strcasecmp(value, "json") == 0;
        if (ok)
            *(int *)field = strcasecmp(value, "json") == 0 ? WSG_LOG_JSON : WSG_LOG_TEXT;
        break;
    }
    bool numeric = o->type == OPT_PORT || o->type == OPT_UINT || o->type == OPT_DURATION ||
                   o->type == OPT_SIZE;
    /* OPT_DOUBLE checks its own range above. */
    if (ok && numeric)
        ok = num >= o->min && num <= o->max;
    if (!ok) {
        char expected[200];
        char where[64];
        describe_expected(o, expected, sizeof(expected));
        fail(ld, "invalid value \"%s\" for %s (--%s) %s: expected %s", value, o->env, o->flag,
             source_name(src, where, sizeof(where), line), expected);
        return -1;
    }
    switch (o->type) {
    case OPT_PORT:
        *(uint16_t *)field = (uint16_t)num;
        break;
    case OPT_UINT:
        *(uint32_t *)field = (uint32_t)num;
        break;
    case OPT_DURATION:
    case OPT_SIZE:
        *(uint64_t *)field = num;
        break;
    default:
        break;
    }
    return 0;
}

static const wsg_option *find_by_env(const char *name, size_t len)
{
    for (size_t i = 0; i < wsg_option_count; i++) {
        if (strlen(wsg_options[i].env) == len && strncmp(wsg_options[i].env, name, len) == 0)
            return &wsg_options[i];
    }
    return NULL;
}

static const wsg_option *find_by_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < wsg_option_count; i++) {
        if (strlen(wsg_options[i].flag) == len && strncmp(wsg_options[i].flag, name, len) == 0)
            return &wsg_options[i];
    }
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

static int load_file(loader *ld, const char *path)
{
    FILE *f = fopen(path, "r");
    char *raw = NULL;
    size_t cap = 0;
    int line = 0;
    int rc = -1;
    if (f == NULL) {
        fail(ld, "cannot read the env file %s (--env-file, %s): %s", path, ENV_FILE_VAR,
             strerror(errno));
        return -1;
    }
    while (getline(&raw, &cap, f) >= 0) {
        line++;
        char *s = trim(raw);
        if (*s == '\0' || *s == '#')
            continue;
        if (strncmp(s, "export ", 7) == 0)
            s = trim(s + 7);
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            fail(ld, "%s line %d: expected KEY=VALUE, found \"%.60s\"", path, line, s);
            goto out;
        }
        *eq = '\0';
        char *key = trim(s);
        char *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && (value[0] == '"' || value[0] == '\'') && value[vlen - 1] == value[0]) {
            value[vlen - 1] = '\0';
            value++;
        }
        const wsg_option *o = find_by_env(key, strlen(key));
        if (o == NULL) {
            /* The file may be shared with other programs: warn, go on. */
            fprintf(stderr, "wsgate: warning: %s line %d: unknown option %s is ignored\n", path,
                    line, key);
            continue;
        }
        if (apply(ld, o, value, SRC_FILE, line) < 0) {
            size_t n = strlen(ld->err);
            snprintf(ld->err + n, ld->errlen - n, " (file %s)", path);
            goto out;
        }
    }
    rc = 0;
out:
    free(raw);
    fclose(f);
    return rc;
}

static int load_env(loader *ld, char **envp)
{
    for (char **e = envp; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (eq == NULL)
            continue;
        const wsg_option *o = find_by_env(*e, (size_t)(eq - *e));
        if (o && apply(ld, o, eq + 1, SRC_ENV, 0) < 0)
            return -1;
    }
    return 0;
}

static const char *env_lookup(char **envp, const char *name)
{
    size_t n = strlen(name);
    for (char **e = envp; e && *e; e++) {
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
            return *e + n + 1;
    }
    return NULL;
}

/* Splits "--name=value" or "--name value"; returns the index of the last
 * argument used, or -1 with the error written. */
static int parse_flag(loader *ld, int argc, char **argv, int i, const wsg_option **opt,
                      const char **value)
{
    const char *arg = argv[i] + 2;
    const char *eq = strchr(arg, '=');
    size_t len = eq ? (size_t)(eq - arg) : strlen(arg);
    *opt = find_by_flag(arg, len);
    if (*opt == NULL) {
        fail(ld, "unknown option --%.*s; run wsgate --help for the list", (int)len, arg);
        return -1;
    }
    if (eq) {
        *value = eq + 1;
        return i;
    }
    if ((*opt)->type == OPT_BOOL && (i + 1 >= argc || strncmp(argv[i + 1], "--", 2) == 0)) {
        *value = "true"; /* a boolean flag alone means true */
        return i;
    }
    if (i + 1 >= argc) {
        fail(ld, "option --%s needs a value (%s)", (*opt)->flag, (*opt)->metavar);
        return -1;
    }
    *value = argv[i + 1];
    return i + 1;
}

static int find_env_file_flag(loader *ld, int argc, char **argv, const char **path)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--env-file") == 0) {
            if (i + 1 >= argc) {
                fail(ld, "option --env-file needs a value (PATH)");
                return -1;
            }
            *path = argv[i + 1];
        } else if (strncmp(argv[i], "--env-file=", 11) == 0) {
            *path = argv[i] + 11;
        }
    }
    return 0;
}

static int load_flags(loader *ld, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--env-file") == 0) {
            i++;
            continue;
        }
        if (strncmp(arg, "--env-file=", 11) == 0)
            continue;
        if (strncmp(arg, "--", 2) != 0) {
            fail(ld, "unexpected argument \"%s\"; options start with --, see wsgate --help", arg);
            return -1;
        }
        const wsg_option *o;
        const char *value;
        int last = parse_flag(ld, argc, argv, i, &o, &value);
        if (last < 0 || apply(ld, o, value, SRC_FLAG, 0) < 0)
            return -1;
        i = last;
    }
    return 0;
}

bool wsg_config_tls_on(const wsg_config *cfg, const char *listener_option)
{
    if (strcmp(listener_option, "auto") == 0)
        return cfg->use_tls;
    return strcmp(listener_option, "true") == 0;
}

const char *wsg_config_check_auth_key(const char *key)
{
    for (size_t i = 0; i < sizeof(seed_example_keys) / sizeof(seed_example_keys[0]); i++) {
        if (strcmp(key, seed_example_keys[i]) == 0)
            return "is an example value from documentation; generate your own, e.g. with "
                   "`openssl rand -base64 32`";
    }
    if (strlen(key) < 16)
        return "is shorter than 16 characters; use a long random value, e.g. from "
               "`openssl rand -base64 32`";
    return NULL;
}

/* A file option must name a readable file when set. */
static int check_file(loader *ld, const char *path, const char *env, const char *flag)
{
    if (path[0] == '\0' || access(path, R_OK) == 0)
        return 0;
    fail(ld, "cannot read \"%s\" given as %s (%s): %s", path, env, flag, strerror(errno));
    return -1;
}

static bool host_chars(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_';
        if (!ok)
            return false;
    }
    return n > 0;
}

/* Each item of a comma-separated list must pass `ok`. */
static int check_list(loader *ld, const char *list, bool (*ok)(const char *item, size_t n),
                      const char *env, const char *flag, const char *expected)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        while (n > 0 && p[n - 1] == ' ')
            n--;
        if (n > 0 && !ok(p, n)) {
            fail(ld, "invalid value \"%.*s\" in %s (%s): expected %s", (int)n, p, env, flag,
                 expected);
            return -1;
        }
        p += strcspn(p, ",");
    }
    return 0;
}

/* "https://app.example.com" or "http://localhost:3000", or "null". */
static bool origin_ok(const char *p, size_t n)
{
    if (n == 4 && strncmp(p, "null", 4) == 0)
        return true;
    size_t skip = n > 8 && strncmp(p, "https://", 8) == 0  ? 8
                  : n > 7 && strncmp(p, "http://", 7) == 0 ? 7
                                                            : 0;
    return skip && host_chars(p + skip, n - skip);
}

static bool host_ok(const char *p, size_t n)
{
    return host_chars(p, n);
}

/* "cert.pem:key.pem" with both files readable. */
static bool cert_pair_ok(const char *p, size_t n)
{
    char path[4096];
    const char *colon = memchr(p, ':', n);
    if (colon == NULL || colon == p || colon == p + n - 1 || n >= sizeof(path))
        return false;
    snprintf(path, sizeof(path), "%.*s", (int)(colon - p), p);
    if (access(path, R_OK) != 0)
        return false;
    snprintf(path, sizeof(path), "%.*s", (int)(p + n - colon - 1), colon + 1);
    return access(path, R_OK) == 0;
}

static int check_tls_files(loader *ld)
{
    const wsg_config *cfg = ld->cfg;
    if (check_file(ld, cfg->tls_cert, "TLS_CERT", "--tls-cert") < 0 ||
        check_file(ld, cfg->tls_key, "TLS_KEY", "--tls-key") < 0 ||
        check_file(ld, cfg->backend_ca, "WSGATE_BACKEND_CA", "--backend-ca") < 0)
        return -1;
    return check_list(ld, cfg->tls_sni_certs, cert_pair_ok, "TLS_SNI_CERTS", "--tls-sni-certs",
                      "CERT.pem:KEY.pem naming two readable files");
}

static int check_auth_key(loader *ld)
{
    wsg_config *cfg = ld->cfg;
    if (cfg->auth_key && cfg->auth_key[0] == '\0') {
        free(cfg->auth_key);
        cfg->auth_key = NULL;
    }
    const char *why = cfg->auth_key ? wsg_config_check_auth_key(cfg->auth_key) : NULL;
    if (why) {
        fail(ld, "GATEWAY_AUTH_KEY (--gateway-auth-key) %s", why);
        return -1;
    }
    return 0;
}

static bool ip_literal(const char *s)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

/* ADDR:PORT, ADDR an IP literal ([::1] for IPv6), PORT not one of the
 * public listeners'. */
static bool admin_bind_ok(const wsg_config *cfg)
{
    const char *colon = strrchr(cfg->admin_bind, ':');
    char host[INET6_ADDRSTRLEN + 2];
    long port = colon ? strtol(colon + 1, NULL, 10) : 0;
    size_t hlen = colon ? (size_t)(colon - cfg->admin_bind) : 0;
    if (!colon || hlen == 0 || hlen >= sizeof(host) || port <= 0 || port > 65535 ||
        port == cfg->ws_port || port == cfg->http_port)
        return false;
    memcpy(host, cfg->admin_bind, hlen);
    host[hlen] = '\0';
    char *h = host;
    if (h[0] == '[' && h[hlen - 1] == ']') {
        h[hlen - 1] = '\0';
        h++;
    }
    return ip_literal(h);
}

static int check_listeners(loader *ld)
{
    wsg_config *cfg = ld->cfg;
    if (!ip_literal(cfg->bind)) {
        fail(ld, "invalid value \"%s\" for WSGATE_BIND (--bind): expected an IPv4 or IPv6 "
             "address such as 0.0.0.0, 127.0.0.1 or ::", cfg->bind);
        return -1;
    }
    if (cfg->admin_bind[0] && !admin_bind_ok(cfg)) {
        fail(ld, "invalid value \"%s\" for ADMIN_BIND (--admin-bind): expected ADDR:PORT "
             "such as 127.0.0.1:8081, on a port other than WS_PORT and WEBSRV_PORT",
             cfg->admin_bind);
        return -1;
    }
    if (cfg->ws_port == cfg->http_port) {
        fail(ld, "WS_PORT (--ws-port) and WEBSRV_PORT (--websrv-port) are both %u; give them "
             "different ports", cfg->ws_port);
        return -1;
    }
    return 0;
}

static int check_tls(loader *ld)
{
    wsg_config *cfg = ld->cfg;
    bool any_tls = wsg_config_tls_on(cfg, cfg->ws_tls) || wsg_config_tls_on(cfg, cfg->http_tls) ||
                   wsg_config_tls_on(cfg, cfg->admin_tls);
    if (any_tls && (cfg->tls_cert[0] == '\0' || cfg->tls_key[0] == '\0')) {
        fail(ld, "TLS is on (WEBSRV_USESSL or a *_TLS option) but TLS_CERT (--tls-cert) and "
             "TLS_KEY (--tls-key) do not both name PEM files");
        return -1;
    }
    return check_tls_files(ld);
}

/* The options whose value has a small grammar of its own. */
static int check_forms(loader *ld)
{
    wsg_config *cfg = ld->cfg;
    const char *sticky = cfg->sticky_key;
    if (strncmp(sticky, "query:", 6) != 0 && strncmp(sticky, "header:", 7) != 0 &&
        strncmp(sticky, "cookie:", 7) != 0) {
        fail(ld, "invalid value \"%s\" for WSGATE_STICKY_KEY (--sticky-key): expected "
             "query:NAME, header:NAME or cookie:NAME", sticky);
        return -1;
    }
    if (strchr(sticky, ':')[1] == '\0') {
        fail(ld, "invalid value \"%s\" for WSGATE_STICKY_KEY (--sticky-key): the NAME after "
             "the colon is missing", sticky);
        return -1;
    }
    const char *check = cfg->health_check;
    if (strcmp(check, "tcp") != 0 && strcmp(check, "off") != 0 &&
        strncmp(check, "http:/", 6) != 0) {
        fail(ld, "invalid value \"%s\" for WSGATE_HEALTH_CHECK (--health-check): expected tcp, "
             "off or http:/PATH", check);
        return -1;
    }
    if (cfg->default_service[0] == '\0') {
        fail(ld, "WSGATE_DEFAULT_SERVICE (--default-service) is empty; give a service name");
        return -1;
    }
    if (check_list(ld, cfg->allowed_origins, origin_ok, "ALLOWED_ORIGINS", "--allowed-origins",
                   "an origin like https://app.example.com") < 0)
        return -1;
    return check_list(ld, cfg->allowed_hosts, host_ok, "WSGATE_ALLOWED_HOSTS", "--allowed-hosts",
                      "a host like example.com or example.com:9000");
}

static int check_timing(loader *ld)
{
    wsg_config *cfg = ld->cfg;
    if (cfg->server_timeout <= cfg->heartbeat_interval) {
        fail(ld, "SERVER_TIMEOUT (--server-timeout, %llums) must be longer than "
             "HEARTBEAT_INTERVAL (--heartbeat-interval, %llums)",
             (unsigned long long)cfg->server_timeout, (unsigned long long)cfg->heartbeat_interval);
        return -1;
    }
    return 0;
}

/* What one option's value cannot tell alone: its grammar beyond a type, and
 * how options fit together. The first problem found is reported. */
static int validate(loader *ld)
{
    if (check_auth_key(ld) < 0 || check_listeners(ld) < 0 || check_tls(ld) < 0 ||
        check_forms(ld) < 0 || check_timing(ld) < 0)
        return -1;
    return 0;
}

static bool wants(int argc, char **argv, const char *a, const char *b)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], a) == 0 || strcmp(argv[i], b) == 0)
            return true;
        if (strcmp(argv[i], "--env-file") == 0)
            i++;
    }
    return false;
}

wsg_config_result wsg_config_load(wsg_config *cfg, int argc, char **argv, char **envp,
                                  void *out, char *err, size_t errlen)
{
    uint8_t set_by[wsg_option_count];
    loader ld = {.cfg = cfg, .set_by = set_by, .err = err, .errlen = errlen};
    const char *path = NULL;
    bool explicit_file;

    memset(cfg, 0, sizeof(*cfg));
    memset(set_by, 0, sizeof(set_by));
    err[0] = '\0';
    if (wants(argc, argv, "--help", "-h")) {
        wsg_config_print_help(out);
        return WSG_CONFIG_EXIT;
    }
    if (wants(argc, argv, "--version", "-V")) {
        fprintf(out, "wsgate %s\n", WSG_VERSION);
        return WSG_CONFIG_EXIT;
    }
    for (size_t i = 0; i < wsg_option_count; i++) {
        if (wsg_options[i].def && apply(&ld, &wsg_options[i], wsg_options[i].def, SRC_DEFAULT,
                                        0) < 0)
            return WSG_CONFIG_ERROR;
    }
    if (find_env_file_flag(&ld, argc, argv, &path) < 0)
        return WSG_CONFIG_ERROR;
    if (path == NULL)
        path = env_lookup(envp, ENV_FILE_VAR);
    explicit_file = path != NULL;
    if (!explicit_file) {
        FILE *probe = fopen(DEFAULT_ENV_FILE, "r");
        if (probe) {
            fclose(probe);
            path = DEFAULT_ENV_FILE;
        }
    }
    if (path && path[0]) {
        cfg->env_file = xstrdup(path);
        if (load_file(&ld, path) < 0)
            return WSG_CONFIG_ERROR;
    }
    if (load_env(&ld, envp) < 0 || load_flags(&ld, argc, argv) < 0 || validate(&ld) < 0)
        return WSG_CONFIG_ERROR;
    return WSG_CONFIG_OK;
}

void wsg_config_free(wsg_config *cfg)
{
    for (size_t i = 0; i < wsg_option_count; i++) {
        char *field = (char *)cfg + wsg_options[i].offset;
        if (wsg_options[i].type == OPT_STRING || wsg_options[i].type == OPT_CHOICE) {
            free(*(char **)field);
            *(char **)field = NULL;
        }
    }
    list_free(&cfg->backends, &cfg->backend_count);
    free(cfg->env_file);
    cfg->env_file = NULL;
}

/* Prints text in lines of at most `width` columns, indented. */
static void print_wrapped(FILE *out, const char *text, int indent, int width)
{
    const char *p = text;
    while (*p) {
        int room = width - indent;
        int n = (int)strlen(p);
        if (n > room) {
            n = room;
            while (n > 0 && p[n] != ' ')
                n--;
            if (n == 0)
                n = room;
        }
        fprintf(out, "%*s%.*s\n", indent, "", n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
}

/* Headings of --help, each printed before the option that opens its group
 * in the option table. */
static const struct {
    const char *flag;
    const char *title;
} help_sections[] = {
    {"bind", "Listeners and processes"},
    {"admin-bind", "Admin API and dashboard"},
    {"gateway-auth-key", "Authentication and TLS"},
    {"allowed-origins", "Access control and limits"},
    {"backend", "Backends, sticky sessions and balancing"},
    {"drain-mode", "Draining and failover"},
    {"health-check", "Health checks of configured backends"},
    {"handshake-timeout", "Connections"},
    {"log-level", "Logging"},
};

static void print_section_title(FILE *out, const char *flag)
{
    for (size_t i = 0; i < sizeof help_sections / sizeof help_sections[0]; i++)
        if (strcmp(help_sections[i].flag, flag) == 0)
            fprintf(out, "%s%s:\n", i ? "\n" : "", help_sections[i].title);
}

void wsg_config_print_help(void *outp)
{
    FILE *out = outp;
    fprintf(out,
            "wsgate %s: a WebSocket gateway.\n"
            "\n"
            "Usage: wsgate [OPTION]...\n"
            "\n"
            "Accepts WebSocket clients on WS_PORT and proxies each, frame by frame, to a\n"
            "backend of the default service, keeping each client on the same backend and\n"
            "moving it live when that backend dies or is drained. WEBSRV_PORT serves\n"
            "backend registration, the admin API, /metrics, the dashboard and health.\n"
            "\n"
            "Every option is also an environment variable and a KEY=VALUE line of an env\n"
            "file (--env-file PATH or %s; else ./%s when present).\n"
            "Precedence: flag > environment > file > default. Durations take units\n"
            "(250ms, 10s, 5m, 1h; a bare number is milliseconds); sizes take KiB, MiB, GiB.\n"
            "\n"
            "",
            WSG_VERSION, ENV_FILE_VAR, DEFAULT_ENV_FILE);
    for (size_t i = 0; i < wsg_option_count; i++) {
        const wsg_option *o = &wsg_options[i];
        print_section_title(out, o->flag);
        fprintf(out, "  --%s %s  (env %s, default %s)\n", o->flag, o->metavar, o->env,
                o->def ? (o->def[0] ? o->def : "empty") : "unset");
        print_wrapped(out, o->help, 8, 78);
    }
    fprintf(out,
            "\nOther:\n"
            "  %s  (env %s)\n        read options from this KEY=VALUE file\n"
            "  %s\n        show this help and exit\n"
            "  %s\n        show the version and exit\n"
            "\n"
            "Example:\n"
            "  wsgate --backend 127.0.0.1:3001 --backend 127.0.0.1:3002 --ws-port 9000\n"
            "  python3 -c 'import asyncio, websockets\n"
            "  async def m():\n"
            "      async with websockets.connect(\"ws://127.0.0.1:9000/?clientId=c1\") as ws:\n"
            "          await ws.send(\"hi\"); print(await ws.recv())\n"
            "  asyncio.run(m())'\n"
            "\n"
            "Signals: SIGTERM or SIGINT stops accepting and drains for SHUTDOWN_TIMEOUT,\n"
            "then closes every connection with 1001; a second signal ends at once.\n"
            "SIGHUP reloads the TLS certificates and keys.\n",
            "--env-file PATH", ENV_FILE_VAR, "-h, --help", "-V, --version");
}
