/* The configuration loader (src/config): env files, flags and the
 * environment.
 *
 * Each input is loaded three ways:
 *
 *   1. as an env file: written to a temporary file (made once, rewritten
 *      each run) and loaded with argv {"wsgate", "--env-file", path} and
 *      an empty environment;
 *   2. split on NUL bytes into command-line arguments;
 *   3. split the same way into environment entries.
 *
 * In 2 and 3 any env file named (--env-file, WSGATE_ENV_FILE) is replaced
 * by the temporary file, so that no run reads a file of the fuzzer's
 * choosing (/dev/zero, /dev/stdin) and none probes ./.env.gateway: an
 * empty WSGATE_ENV_FILE closes that door, so runs repeat wherever the
 * fuzzer starts. --help and --version print to /dev/null, and the
 * warnings about unknown keys go there too.
 *
 * A load that succeeds must give the validated struct config.h describes:
 * every number within its option's range, the cross-option rules kept.
 * One that fails must say why within the error buffer, whose size the
 * input picks in the second load. wsg_config_free runs after every load.
 */
#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config_int.h"

#include "fuzz_check.h"

#define MAX_ARGS 64
#define ENV_FILE_VAR "WSGATE_ENV_FILE="

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char env_path[256];
static int env_fd = -1;
static FILE *devnull;

static void remove_env_file(void)
{
    unlink(env_path);
}

static void setup_once(void)
{
    if (env_fd >= 0)
        return;
    const char *dir = getenv("TMPDIR");
    snprintf(env_path, sizeof(env_path), "%s/wsgate-fuzz-env-XXXXXX", dir && *dir ? dir : "/tmp");
    env_fd = mkstemp(env_path);
    devnull = fopen("/dev/null", "w");
    CHECK(env_fd >= 0 && devnull != NULL);
    atexit(remove_env_file);
}

static void write_env_file(const uint8_t *data, size_t size)
{
    CHECK(ftruncate(env_fd, 0) == 0);
    size_t done = 0;
    while (done < size) {
        ssize_t n = pwrite(env_fd, data + done, size - done, (off_t)done);
        CHECK(n > 0);
        done += (size_t)n;
    }
}

static char *dup_mem(const uint8_t *p, size_t n)
{
    char *d = malloc(n + 1);
    CHECK(d != NULL);
    memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

/* Splits the input at NUL bytes into at most MAX_ARGS strings. */
static size_t split_entries(const uint8_t *data, size_t size, char **out)
{
    size_t count = 0;
    size_t start = 0;
    for (size_t i = 0; i <= size && count < MAX_ARGS; i++) {
        if (i == size || data[i] == 0) {
            if (i > start || i < size)
                out[count++] = dup_mem(data + start, i - start);
            start = i + 1;
        }
    }
    return count;
}

static void free_entries(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
}

static bool in_range(const wsg_option *o, uint64_t v)
{
    return v >= o->min && v <= o->max;
}

/* What a successful load promises (config.h and validate() in config.c). */
static void check_config(const wsg_config *cfg)
{
    for (size_t i = 0; i < wsg_option_count; i++) {
        const wsg_option *o = &wsg_options[i];
        const char *field = (const char *)cfg + o->offset;
        switch (o->type) {
        case OPT_PORT:
            CHECK(in_range(o, *(const uint16_t *)field));
            break;
        case OPT_UINT:
            CHECK(in_range(o, *(const uint32_t *)field));
            break;
        case OPT_DURATION:
        case OPT_SIZE:
            CHECK(in_range(o, *(const uint64_t *)field));
            break;
        case OPT_DOUBLE: {
            double d; /* the double member at that offset */
            memcpy(&d, field, sizeof(d));
            CHECK(d * 1000 >= (double)o->min && d * 1000 <= (double)o->max);
            break;
        }
        case OPT_STRING:
            if (o->def)
                CHECK(*(char *const *)field != NULL);
            break;
        case OPT_LOG_LEVEL:
            CHECK(*(const int *)field >= 0 && *(const int *)field <= 3);
            break;
        case OPT_LOG_FORMAT:
            CHECK(*(const int *)field == 0 || *(const int *)field == 1);
            break;
        default:
            break;
        }
    }
    unsigned char addr[16];
    CHECK(inet_pton(AF_INET, cfg->bind, addr) == 1 || inet_pton(AF_INET6, cfg->bind, addr) == 1);
    CHECK(cfg->ws_port != cfg->http_port);
    CHECK(cfg->server_timeout > cfg->heartbeat_interval);
    CHECK(strcmp(cfg->drain_mode, "migrate") == 0 || strcmp(cfg->drain_mode, "finish") == 0);
    const char *colon = strchr(cfg->sticky_key, ':');
    CHECK(colon != NULL && colon[1] != '\0');
    CHECK(cfg->default_service[0] != '\0');
    CHECK(cfg->auth_key == NULL || wsg_config_check_auth_key(cfg->auth_key) == NULL);
    CHECK((cfg->backends == NULL) == (cfg->backend_count == 0));
    for (size_t i = 0; i < cfg->backend_count; i++)
        CHECK(cfg->backends[i] != NULL);
}

static bool asks_to_exit(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") || !strcmp(argv[i], "--version") ||
            !strcmp(argv[i], "-V"))
            return true;
    }
    return false;
}

static void load(int argc, char **argv, char **envp, size_t errlen)
{
    wsg_config cfg;
    char *err = malloc(errlen);
    CHECK(err != NULL);
    /* Unknown keys in the file warn on stderr: too loud for millions of
     * runs. Sanitizer reports do not go through this FILE. */
    FILE *saved = stderr;
    stderr = devnull;
    wsg_config_result rc = wsg_config_load(&cfg, argc, argv, envp, devnull, err, errlen);
    stderr = saved;
    CHECK(strnlen(err, errlen) < errlen);
    switch (rc) {
    case WSG_CONFIG_OK:
        CHECK(err[0] == '\0');
        check_config(&cfg);
        break;
    case WSG_CONFIG_EXIT:
        CHECK(asks_to_exit(argc, argv));
        break;
    case WSG_CONFIG_ERROR:
        CHECK(errlen == 1 || err[0] != '\0');
        break;
    default:
        CHECK(!"unknown result");
    }
    wsg_config_free(&cfg);
    CHECK(cfg.bind == NULL && cfg.backends == NULL && cfg.env_file == NULL);
    free(err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *entries[MAX_ARGS];
    char *argv[MAX_ARGS + 2];
    char *envp[MAX_ARGS + 2];
    setup_once();
    write_env_file(data, size);

    /* 1: the input is an env file. */
    char *file_argv[] = {"wsgate", "--env-file", env_path, NULL};
    char *no_env[] = {NULL};
    load(3, file_argv, no_env, 256);

    /* 2: the input is the command line. */
    size_t n = split_entries(data, size, entries);
    char empty_file[] = ENV_FILE_VAR;
    char *default_env[] = {empty_file, NULL};
    char file_flag[sizeof(env_path) + 16];
    snprintf(file_flag, sizeof(file_flag), "--env-file=%s", env_path);
    argv[0] = "wsgate";
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = entries[i];
        if (strncmp(entries[i], "--env-file=", 11) == 0 && entries[i][11] != '\0')
            argv[i + 1] = file_flag;
        else if (i > 0 && strcmp(entries[i - 1], "--env-file") == 0)
            argv[i + 1] = env_path;
    }
    argv[n + 1] = NULL;
    load((int)n + 1, argv, default_env, 1 + (size ? data[0] % 128 : 0));

    /* 3: the input is the environment. */
    char env_var[sizeof(env_path) + 20];
    snprintf(env_var, sizeof(env_var), "%s%s", ENV_FILE_VAR, env_path);
    for (size_t i = 0; i < n; i++) {
        envp[i] = entries[i];
        if (strncmp(entries[i], ENV_FILE_VAR, strlen(ENV_FILE_VAR)) == 0 &&
            entries[i][strlen(ENV_FILE_VAR)] != '\0')
            envp[i] = env_var;
    }
    envp[n] = empty_file;
    envp[n + 1] = NULL;
    char *only_name[] = {"wsgate", NULL};
    load(1, only_name, envp, 200);

    /* The unit parsers on their own, with the input as one string. */
    char *s = dup_mem(data, size);
    uint64_t v;
    if (wsg_config_parse_duration(s, &v) == 0 || wsg_config_parse_size(s, &v) == 0)
        CHECK(s[0] >= '0' && s[0] <= '9');
    (void)wsg_config_check_auth_key(s);
    free(s);
    free_entries(entries, n);
    return 0;
}
