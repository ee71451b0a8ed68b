/* Unit tests for src/config: defaults, the three sources and their
 * precedence, value syntax, the env file format, validation, and the
 * --help and --version exits.
 *
 * The tests run inside a fresh temporary directory, so that a stray
 * .env.gateway where the suite happens to start cannot change a default.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include <cmocka.h>

#include "config/config_int.h"
#include "core/log.h"

#define KIB (1024ULL)
#define MIB (1024ULL * 1024)
#define GIB (1024ULL * 1024 * 1024)

#define MAX_FILES 64

static char work_dir[64];
static char old_dir[4096];
static char *made_files[MAX_FILES];
static size_t made_count;

static int group_setup(void **state)
{
    (void)state;
    if (getcwd(old_dir, sizeof(old_dir)) == NULL)
        return -1;
    snprintf(work_dir, sizeof(work_dir), "/tmp/wsg-config-XXXXXX");
    if (mkdtemp(work_dir) == NULL || chdir(work_dir) != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < made_count; i++) {
        unlink(made_files[i]);
        free(made_files[i]);
    }
    made_count = 0;
    unlink(".env.gateway");
    if (chdir(old_dir) != 0)
        return -1;
    return rmdir(work_dir);
}

/* Writes an env file under the work directory; the path lives until the
 * group ends. */
static const char *write_env_file(const char *content)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/env-XXXXXX", work_dir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(content);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    assert_true(made_count < MAX_FILES);
    made_files[made_count] = strdup(path);
    assert_non_null(made_files[made_count]);
    return made_files[made_count++];
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE ((const char *const[]){NULL})

/* Runs wsg_config_load with argv = "wsgate" + args and envp = env. */
static wsg_config_result load_out(wsg_config *cfg, const char *const *args,
                                  const char *const *env, FILE *out, char *err, size_t errlen)
{
    char *argv[64];
    char *envp[64];
    int argc = 0;
    size_t envc = 0;
    argv[argc++] = (char *)"wsgate";
    for (size_t i = 0; args[i]; i++) {
        assert_true(argc < 63);
        argv[argc++] = (char *)args[i];
    }
    argv[argc] = NULL;
    for (size_t i = 0; env[i]; i++) {
        assert_true(envc < 63);
        envp[envc++] = (char *)env[i];
    }
    envp[envc] = NULL;
    return wsg_config_load(cfg, argc, argv, envp, out, err, errlen);
}

static wsg_config_result load(wsg_config *cfg, const char *const *args, const char *const *env,
                              char *err, size_t errlen)
{
    return load_out(cfg, args, env, stdout, err, errlen);
}

static void expect_contains(const char *text, const char *part)
{
    if (text == NULL || strstr(text, part) == NULL)
        fail_msg("\"%s\" does not mention \"%s\"", text ? text : "(null)", part);
}

static void expect_ok(const char *const *args, const char *const *env, wsg_config *cfg)
{
    char err[512];
    wsg_config_result rc = load(cfg, args, env, err, sizeof(err));
    if (rc != WSG_CONFIG_OK)
        fail_msg("load failed (%d): %s", rc, err);
}

/* Expects the load to fail with a message that holds every given part. */
static void expect_error(const char *const *args, const char *const *env, const char *part1,
                         const char *part2, const char *part3)
{
    char err[512];
    wsg_config cfg;
    wsg_config_result rc = load(&cfg, args, env, err, sizeof(err));
    wsg_config_free(&cfg);
    if (rc != WSG_CONFIG_ERROR)
        fail_msg("load gave %d, want an error naming %s", rc, part1);
    assert_true(strlen(err) > 0);
    assert_null(strchr(err, '\n'));
    expect_contains(err, part1);
    if (part2)
        expect_contains(err, part2);
    if (part3)
        expect_contains(err, part3);
}

/* Redirects stderr into a temporary file while a call runs. */
typedef struct captured {
    int saved;
    FILE *file;
    char text[4096];
} captured;

static void capture_begin(captured *c)
{
    fflush(stderr);
    c->file = tmpfile();
    assert_non_null(c->file);
    c->saved = dup(2);
    assert_true(c->saved >= 0);
    assert_true(dup2(fileno(c->file), 2) >= 0);
}

static void capture_end(captured *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    rewind(c->file);
    size_t n = fread(c->text, 1, sizeof(c->text) - 1, c->file);
    c->text[n] = '\0';
    fclose(c->file);
}

/* ---- defaults ---------------------------------------------------------- */

static void test_defaults(void **state)
{
    (void)state;
    wsg_config cfg;
    expect_ok(NONE, NONE, &cfg);
    assert_string_equal(cfg.bind, "0.0.0.0");
    assert_int_equal(cfg.ws_port, 9000);
    assert_int_equal(cfg.http_port, 8000);
    assert_int_equal(cfg.threads, 0);
    assert_int_equal(cfg.max_connections, 0);
    assert_int_equal(cfg.listen_backlog, 4096);
    assert_null(cfg.auth_key);
    assert_string_equal(cfg.trusted_proxies, "");
    assert_null(cfg.backends);
    assert_int_equal(cfg.backend_count, 0);
    assert_null(cfg.upstreams);
    assert_string_equal(cfg.default_service, "default");
    assert_int_equal(cfg.handshake_timeout, 10000);
    assert_int_equal(cfg.upstream_timeout, 5000);
    assert_int_equal(cfg.ping_interval, 25000);
    assert_int_equal(cfg.pong_timeout, 5000);
    assert_int_equal(cfg.idle_timeout, 0);
    assert_int_equal(cfg.close_timeout, 5000);
    assert_int_equal(cfg.slow_consumer_timeout, 30000);
    assert_int_equal(cfg.shutdown_timeout, 30000);
    assert_int_equal(cfg.max_message_size, 16 * MIB);
    assert_int_equal(cfg.max_header_size, 16 * KIB);
    assert_int_equal(cfg.write_high_water, 1 * MIB);
    assert_false(cfg.validate_utf8);
    assert_int_equal(cfg.log_level, WSG_LOG_INFO);
    assert_int_equal(cfg.log_format, WSG_LOG_TEXT);
    assert_null(cfg.env_file);
    wsg_config_free(&cfg);
}

/* Every default in the table must itself pass the table's own checks. */
static void test_table_defaults_are_valid(void **state)
{
    (void)state;
    for (size_t i = 0; i < wsg_option_count; i++) {
        const wsg_option *o = &wsg_options[i];
        assert_non_null(o->flag);
        assert_non_null(o->env);
        assert_non_null(o->help);
        assert_non_null(o->metavar);
        if (o->def == NULL)
            continue;
        uint64_t v = 0;
        if (o->type == OPT_DURATION)
            assert_int_equal(wsg_config_parse_duration(o->def, &v), 0);
        else if (o->type == OPT_SIZE)
            assert_int_equal(wsg_config_parse_size(o->def, &v), 0);
        else
            continue;
        if (v < o->min || v > o->max)
            fail_msg("default %s of --%s is out of its range", o->def, o->flag);
    }
}

/* ---- precedence -------------------------------------------------------- */

static void test_precedence_all_combinations(void **state)
{
    (void)state;
    const char *file = write_env_file("PING_INTERVAL=1s\n");
    char env_file_var[256];
    snprintf(env_file_var, sizeof(env_file_var), "WSGATE_ENV_FILE=%s", file);

    for (int via_var = 0; via_var < 2; via_var++) {
        for (unsigned mask = 0; mask < 8; mask++) {
            bool use_file = mask & 1;
            bool use_env = mask & 2;
            bool use_flag = mask & 4;
            const char *args[8] = {0};
            const char *env[8] = {0};
            size_t na = 0;
            size_t ne = 0;
            env[ne++] = "HOME=/nowhere";
            if (use_file && via_var)
                env[ne++] = env_file_var;
            if (use_file && !via_var) {
                args[na++] = "--env-file";
                args[na++] = file;
            }
            if (use_env)
                env[ne++] = "PING_INTERVAL=2s";
            if (use_flag)
                args[na++] = "--ping-interval=3s";

            uint64_t want = use_flag ? 3000 : use_env ? 2000 : use_file ? 1000 : 25000;
            wsg_config cfg;
            char err[512];
            wsg_config_result rc = load(&cfg, args, env, err, sizeof(err));
            if (rc != WSG_CONFIG_OK)
                fail_msg("file=%d env=%d flag=%d: %s", use_file, use_env, use_flag, err);
            if (cfg.ping_interval != want)
                fail_msg("file=%d env=%d flag=%d (file via %s): got %llu, want %llu",
                         use_file, use_env, use_flag, via_var ? "env" : "flag",
                         (unsigned long long)cfg.ping_interval, (unsigned long long)want);
            if (use_file)
                assert_string_equal(cfg.env_file, file);
            else
                assert_null(cfg.env_file);
            wsg_config_free(&cfg);
        }
    }
}

static void test_env_file_flag_beats_env_var(void **state)
{
    (void)state;
    const char *a = write_env_file("WS_PORT=9101\n");
    const char *b = write_env_file("WS_PORT=9102\n");
    char var[256];
    snprintf(var, sizeof(var), "WSGATE_ENV_FILE=%s", b);
    char flag[256];
    snprintf(flag, sizeof(flag), "--env-file=%s", a);
    wsg_config cfg;

    expect_ok(ARGS("--env-file", a), ARGS(var), &cfg);
    assert_int_equal(cfg.ws_port, 9101);
    assert_string_equal(cfg.env_file, a);
    wsg_config_free(&cfg);

    expect_ok(ARGS(flag), ARGS(var), &cfg);
    assert_int_equal(cfg.ws_port, 9101);
    wsg_config_free(&cfg);

    expect_ok(NONE, ARGS(var), &cfg);
    assert_int_equal(cfg.ws_port, 9102);
    assert_string_equal(cfg.env_file, b);
    wsg_config_free(&cfg);
}

static void test_default_env_file_in_working_directory(void **state)
{
    (void)state;
    FILE *f = fopen(".env.gateway", "w");
    assert_non_null(f);
    fputs("WS_PORT=9200\n", f);
    fclose(f);
    wsg_config cfg;

    expect_ok(NONE, NONE, &cfg);
    assert_int_equal(cfg.ws_port, 9200);
    assert_string_equal(cfg.env_file, ".env.gateway");
    wsg_config_free(&cfg);

    /* An empty WSGATE_ENV_FILE turns the file off. */
    expect_ok(NONE, ARGS("WSGATE_ENV_FILE="), &cfg);
    assert_int_equal(cfg.ws_port, 9000);
    assert_null(cfg.env_file);
    wsg_config_free(&cfg);

    expect_ok(ARGS("--env-file="), NONE, &cfg);
    assert_int_equal(cfg.ws_port, 9000);
    wsg_config_free(&cfg);

    const char *other = write_env_file("WEBSRV_PORT=8100\n");
    expect_ok(ARGS("--env-file", other), NONE, &cfg);
    assert_int_equal(cfg.ws_port, 9000);
    assert_int_equal(cfg.http_port, 8100);
    wsg_config_free(&cfg);

    assert_int_equal(unlink(".env.gateway"), 0);
}

static void test_missing_env_file(void **state)
{
    (void)state;
    expect_error(ARGS("--env-file", "/nonexistent/wsgate.env"), NONE, "/nonexistent/wsgate.env",
                 NULL, NULL);
    expect_error(NONE, ARGS("WSGATE_ENV_FILE=/nonexistent/other.env"), "/nonexistent/other.env",
                 NULL, NULL);
    expect_error(ARGS("--env-file"), NONE, "--env-file", NULL, NULL);
}

/* ---- flags ------------------------------------------------------------- */

static void test_flag_forms(void **state)
{
    (void)state;
    wsg_config cfg;

    expect_ok(ARGS("--ws-port=9001", "--websrv-port", "8001", "--bind", "127.0.0.1",
                   "--default-service=chat", "--log-level", "debug", "--log-format=json"),
              NONE, &cfg);
    assert_int_equal(cfg.ws_port, 9001);
    assert_int_equal(cfg.http_port, 8001);
    assert_string_equal(cfg.bind, "127.0.0.1");
    assert_string_equal(cfg.default_service, "chat");
    assert_int_equal(cfg.log_level, WSG_LOG_DEBUG);
    assert_int_equal(cfg.log_format, WSG_LOG_JSON);
    wsg_config_free(&cfg);

    /* Only the first '=' separates name and value. */
    expect_ok(ARGS("--upstreams={\"chat\":[\"ws://10.0.0.5:3001/?a=b\"]}"), NONE, &cfg);
    assert_string_equal(cfg.upstreams, "{\"chat\":[\"ws://10.0.0.5:3001/?a=b\"]}");
    wsg_config_free(&cfg);

    /* A later flag replaces an earlier one. */
    expect_ok(ARGS("--ws-port", "9001", "--ws-port=9002"), NONE, &cfg);
    assert_int_equal(cfg.ws_port, 9002);
    wsg_config_free(&cfg);

    /* A value may itself start with a dash when given with '='. */
    expect_ok(ARGS("--default-service=-svc"), NONE, &cfg);
    assert_string_equal(cfg.default_service, "-svc");
    wsg_config_free(&cfg);

    expect_error(ARGS("--ws-port"), NONE, "--ws-port", NULL, NULL);
    expect_error(ARGS("--bind=0.0.0.0", "--ping-interval"), NONE, "--ping-interval", NULL, NULL);
}

static void test_bool_flag(void **state)
{
    (void)state;
    static const struct {
        const char *arg;
        bool want;
    } cases[] = {
        {"--validate-utf8", true},         {"--validate-utf8=true", true},
        {"--validate-utf8=1", true},       {"--validate-utf8=yes", true},
        {"--validate-utf8=ON", true},      {"--validate-utf8=false", false},
        {"--validate-utf8=0", false},      {"--validate-utf8=no", false},
        {"--validate-utf8=Off", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wsg_config cfg;
        expect_ok(ARGS(cases[i].arg), ARGS("VALIDATE_UTF8=true"), &cfg);
        if (cfg.validate_utf8 != cases[i].want)
            fail_msg("%s gave %d", cases[i].arg, cfg.validate_utf8);
        wsg_config_free(&cfg);
    }
    /* The value may also follow as the next argument. */
    {
        wsg_config cfg;
        expect_ok(ARGS("--validate-utf8", "false"), ARGS("VALIDATE_UTF8=true"), &cfg);
        assert_false(cfg.validate_utf8);
        wsg_config_free(&cfg);
        expect_ok(ARGS("--validate-utf8", "--ws-port", "9001"), NONE, &cfg);
        assert_true(cfg.validate_utf8);
        assert_int_equal(cfg.ws_port, 9001);
        wsg_config_free(&cfg);
    }
    wsg_config cfg;
    expect_ok(NONE, ARGS("VALIDATE_UTF8=true"), &cfg);
    assert_true(cfg.validate_utf8);
    wsg_config_free(&cfg);

    expect_error(ARGS("--validate-utf8=maybe"), NONE, "VALIDATE_UTF8", "--validate-utf8",
                 "maybe");
    expect_error(NONE, ARGS("VALIDATE_UTF8="), "VALIDATE_UTF8", "--validate-utf8", NULL);
}

static void test_unknown_flag_and_positional(void **state)
{
    (void)state;
    expect_error(ARGS("--no-such-option"), NONE, "--no-such-option", NULL, NULL);
    expect_error(ARGS("--no-such-option=3"), NONE, "--no-such-option", NULL, NULL);
    expect_error(ARGS("--ws-port=9001", "--ws-prot=9002"), NONE, "--ws-prot", NULL, NULL);
    expect_error(ARGS("--WS-PORT=9001"), NONE, "--WS-PORT", NULL, NULL);
    expect_error(ARGS("serve"), NONE, "serve", NULL, NULL);
    expect_error(ARGS("--ws-port", "9001", "extra"), NONE, "extra", NULL, NULL);
    expect_error(ARGS("-p"), NONE, "-p", NULL, NULL);
    /* A boolean flag takes the next argument as its value, as --help shows
     * ("--validate-utf8 BOOL"), so a wrong one names the option. */
    expect_error(ARGS("--validate-utf8", "maybe"), NONE, "VALIDATE_UTF8", "--validate-utf8",
                 NULL);
}

/* ---- lists ------------------------------------------------------------- */

static void expect_backends(const wsg_config *cfg, const char *const *want)
{
    size_t n = 0;
    while (want[n])
        n++;
    if (cfg->backend_count != n)
        fail_msg("%zu backends, want %zu", cfg->backend_count, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(cfg->backends[i], want[i]);
}

static void test_backend_lists(void **state)
{
    (void)state;
    wsg_config cfg;

    expect_ok(ARGS("--backend", "127.0.0.1:3001", "--backend=127.0.0.1:3002", "--backend",
                   "[::1]:3003"),
              NONE, &cfg);
    expect_backends(&cfg, ARGS("127.0.0.1:3001", "127.0.0.1:3002", "[::1]:3003"));
    wsg_config_free(&cfg);

    expect_ok(NONE, ARGS("WSGATE_BACKENDS= a:1, b:2,,c:3 ,"), &cfg);
    expect_backends(&cfg, ARGS("a:1", "b:2", "c:3"));
    wsg_config_free(&cfg);

    expect_ok(ARGS("--backend", "x:9"), ARGS("WSGATE_BACKENDS=a:1,b:2"), &cfg);
    expect_backends(&cfg, ARGS("x:9"));
    wsg_config_free(&cfg);

    const char *file = write_env_file("WSGATE_BACKENDS=f:1,f:2\n");
    expect_ok(ARGS("--env-file", file), NONE, &cfg);
    expect_backends(&cfg, ARGS("f:1", "f:2"));
    wsg_config_free(&cfg);

    expect_ok(ARGS("--env-file", file), ARGS("WSGATE_BACKENDS=e:1"), &cfg);
    expect_backends(&cfg, ARGS("e:1"));
    wsg_config_free(&cfg);

    expect_ok(ARGS("--env-file", file, "--backend", "x:1", "--backend", "x:2"),
              ARGS("WSGATE_BACKENDS=e:1"), &cfg);
    expect_backends(&cfg, ARGS("x:1", "x:2"));
    wsg_config_free(&cfg);
}

/* ---- value syntax ------------------------------------------------------ */

static void test_parse_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t ms;
    } good[] = {
        {"250ms", 250},     {"10s", 10000},   {"5m", 300000}, {"1h", 3600000},
        {"1500", 1500},     {"0", 0},         {"0s", 0},      {"25s", 25000},
        {"24h", 86400000},  {"007s", 7000},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t ms = 12345;
        if (wsg_config_parse_duration(good[i].s, &ms) != 0)
            fail_msg("\"%s\" was refused", good[i].s);
        if (ms != good[i].ms)
            fail_msg("\"%s\" gave %llu, want %llu", good[i].s, (unsigned long long)ms,
                     (unsigned long long)good[i].ms);
    }
    static const char *const bad[] = {
        "10x",  "-5",   "",     "ms",    "s",   "1.5s", "10 x", " 10s", "+10",
        "1e3",  "10sm", "0x10", "10msx", "h1",  "99999999999999999999",
        "6000000000000h",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t ms = 12345;
        if (wsg_config_parse_duration(bad[i], &ms) == 0)
            fail_msg("\"%s\" was accepted as %llu", bad[i], (unsigned long long)ms);
    }
}

static void test_duration_options(void **state)
{
    (void)state;
    wsg_config cfg;
    expect_ok(ARGS("--ping-interval", "250ms", "--pong-timeout=1500", "--idle-timeout=5m",
                   "--handshake-timeout", "1h"),
              ARGS("UPSTREAM_TIMEOUT=2s", "SHUTDOWN_TIMEOUT=0"), &cfg);
    assert_int_equal(cfg.ping_interval, 250);
    assert_int_equal(cfg.pong_timeout, 1500);
    assert_int_equal(cfg.idle_timeout, 300000);
    assert_int_equal(cfg.handshake_timeout, 3600000);
    assert_int_equal(cfg.upstream_timeout, 2000);
    assert_int_equal(cfg.shutdown_timeout, 0);
    wsg_config_free(&cfg);

    static const char *const bad[] = {"10x", "-5", "", "99", "99ms", "24h1", "25h", "86400001"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char env[64];
        char flag[64];
        snprintf(env, sizeof(env), "PING_INTERVAL=%s", bad[i]);
        snprintf(flag, sizeof(flag), "--ping-interval=%s", bad[i]);
        expect_error(NONE, ARGS(env), "PING_INTERVAL", "--ping-interval", NULL);
        expect_error(ARGS(flag), NONE, "PING_INTERVAL", "--ping-interval", NULL);
        expect_error(ARGS("--ping-interval", bad[i]), NONE, "PING_INTERVAL", "--ping-interval",
                     NULL);
    }
    expect_ok(ARGS("--ping-interval=24h"), NONE, &cfg);
    assert_int_equal(cfg.ping_interval, 86400000);
    wsg_config_free(&cfg);
    expect_ok(ARGS("--ping-interval=100ms"), NONE, &cfg);
    assert_int_equal(cfg.ping_interval, 100);
    wsg_config_free(&cfg);
}

static void test_parse_size(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t bytes;
    } good[] = {
        {"64KiB", 64 * KIB}, {"16MiB", 16 * MIB}, {"1g", GIB},       {"1GiB", GIB},
        {"4096", 4096},      {"0", 0},            {"64k", 64 * KIB}, {"2mb", 2 * MIB},
        {"3KB", 3 * KIB},    {"7b", 7},           {"1 MiB", MIB},    {"16mib", 16 * MIB},
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        uint64_t b = 12345;
        if (wsg_config_parse_size(good[i].s, &b) != 0)
            fail_msg("\"%s\" was refused", good[i].s);
        if (b != good[i].bytes)
            fail_msg("\"%s\" gave %llu, want %llu", good[i].s, (unsigned long long)b,
                     (unsigned long long)good[i].bytes);
    }
    static const char *const bad[] = {
        "",   "-1", "k",    "1TiB", "1.5MiB", "16 MiBs", "MiB16", "0x10", " 1k",
        "1kk", "99999999999999999999", "17179869184GiB",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint64_t b = 12345;
        if (wsg_config_parse_size(bad[i], &b) == 0)
            fail_msg("\"%s\" was accepted as %llu", bad[i], (unsigned long long)b);
    }
}

static void test_size_options(void **state)
{
    (void)state;
    wsg_config cfg;
    expect_ok(ARGS("--max-message-size=64KiB", "--max-header-size", "1024"),
              ARGS("WRITE_HIGH_WATER=1g"), &cfg);
    assert_int_equal(cfg.max_message_size, 64 * KIB);
    assert_int_equal(cfg.max_header_size, 1024);
    assert_int_equal(cfg.write_high_water, GIB);
    wsg_config_free(&cfg);

    expect_ok(NONE, ARGS("MAX_MESSAGE_SIZE=16MiB"), &cfg);
    assert_int_equal(cfg.max_message_size, 16 * MIB);
    wsg_config_free(&cfg);

    expect_error(ARGS("--max-message-size=0"), NONE, "MAX_MESSAGE_SIZE", "--max-message-size",
                 NULL);
    expect_error(NONE, ARGS("MAX_MESSAGE_SIZE=lots"), "MAX_MESSAGE_SIZE", "--max-message-size",
                 NULL);
    expect_error(ARGS("--max-header-size=1023"), NONE, "MAX_HEADER_SIZE", "--max-header-size",
                 NULL);
    expect_error(ARGS("--max-header-size=2MiB"), NONE, "MAX_HEADER_SIZE", "--max-header-size",
                 NULL);
    expect_error(NONE, ARGS("WRITE_HIGH_WATER=2g"), "WRITE_HIGH_WATER", "--write-high-water",
                 NULL);
}

static void test_ports(void **state)
{
    (void)state;
    wsg_config cfg;
    expect_ok(ARGS("--ws-port=65535", "--websrv-port=1"), NONE, &cfg);
    assert_int_equal(cfg.ws_port, 65535);
    assert_int_equal(cfg.http_port, 1);
    wsg_config_free(&cfg);

    static const char *const bad[] = {"0", "65536", "99999999999", "-1", "", "80a", "0x50",
                                      " 80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char env[64];
        char flag[64];
        snprintf(env, sizeof(env), "WS_PORT=%s", bad[i]);
        snprintf(flag, sizeof(flag), "--websrv-port=%s", bad[i]);
        expect_error(NONE, ARGS(env), "WS_PORT", "--ws-port", NULL);
        expect_error(ARGS(flag), NONE, "WEBSRV_PORT", "--websrv-port", NULL);
    }
}

static void test_whole_number_options(void **state)
{
    (void)state;
    wsg_config cfg;
    expect_ok(ARGS("--threads=256", "--max-connections", "10000000", "--listen-backlog=16"), NONE,
              &cfg);
    assert_int_equal(cfg.threads, 256);
    assert_int_equal(cfg.max_connections, 10000000);
    assert_int_equal(cfg.listen_backlog, 16);
    wsg_config_free(&cfg);
    expect_error(ARGS("--threads=257"), NONE, "WSGATE_THREADS", "--threads", NULL);
    expect_error(ARGS("--listen-backlog=15"), NONE, "WSGATE_LISTEN_BACKLOG", "--listen-backlog",
                 NULL);
    expect_error(NONE, ARGS("WSGATE_MAX_CONNECTIONS=4294967297"), "WSGATE_MAX_CONNECTIONS",
                 "--max-connections", NULL);
}

static void test_log_options(void **state)
{
    (void)state;
    static const struct {
        const char *value;
        int level;
    } levels[] = {
        {"error", WSG_LOG_ERROR}, {"warn", WSG_LOG_WARN},   {"info", WSG_LOG_INFO},
        {"debug", WSG_LOG_DEBUG}, {"DEBUG", WSG_LOG_DEBUG},
    };
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        char env[64];
        snprintf(env, sizeof(env), "LOG_LEVEL=%s", levels[i].value);
        wsg_config cfg;
        expect_ok(NONE, ARGS(env), &cfg);
        assert_int_equal(cfg.log_level, levels[i].level);
        wsg_config_free(&cfg);
    }
    wsg_config cfg;
    expect_ok(ARGS("--log-format", "json"), NONE, &cfg);
    assert_int_equal(cfg.log_format, WSG_LOG_JSON);
    wsg_config_free(&cfg);
    expect_error(ARGS("--log-level=verbose"), NONE, "LOG_LEVEL", "--log-level", "verbose");
    expect_error(NONE, ARGS("LOG_FORMAT=xml"), "LOG_FORMAT", "--log-format", "xml");
}

/* Options with a fixed set of words take exactly those, and the error
 * lists them. */
static void test_choice_options(void **state)
{
    (void)state;
    wsg_config cfg;
    expect_ok(ARGS("--drain-mode", "finish", "--message-rate-action=drop"),
              ARGS("WSGATE_WS_TLS=false"), &cfg);
    assert_string_equal(cfg.drain_mode, "finish");
    assert_string_equal(cfg.message_rate_action, "drop");
    assert_string_equal(cfg.ws_tls, "false");
    assert_string_equal(cfg.http_tls, "auto");
    wsg_config_free(&cfg);
    expect_error(ARGS("--drain-mode", "migrat"), NONE, "WSGATE_DRAIN_MODE", "migrate or finish",
                 "migrat");
    expect_error(NONE, ARGS("MESSAGE_RATE_ACTION=Drop"), "--message-rate-action",
                 "expected close or drop", "\"Drop\"");
    expect_error(ARGS("--admin-tls="), NONE, "WSGATE_ADMIN_TLS", "auto, true or false", NULL);
}

/* The environment holds much else; only exact option names count. */
static void test_unrelated_environment_ignored(void **state)
{
    (void)state;
    wsg_config cfg;
    expect_ok(NONE,
              ARGS("PATH=/usr/bin:/bin", "NOEQUALS", "WS_PORTX=1", "ws_port=1", "XWS_PORT=1",
                   "WS_POR=1", "=9001", "LANG=C.UTF-8"),
              &cfg);
    assert_int_equal(cfg.ws_port, 9000);
    wsg_config_free(&cfg);
}

/* ---- --help and --version ---------------------------------------------- */

static char *capture_load(const char *const *args, wsg_config_result *rc)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    assert_non_null(out);
    wsg_config cfg;
    char err[512];
    *rc = load_out(&cfg, args, NONE, out, err, sizeof(err));
    wsg_config_free(&cfg);
    fclose(out);
    return text;
}

static void test_help_lists_every_option(void **state)
{
    (void)state;
    const char *const *const forms[] = {
        ARGS("--help"),
        ARGS("-h"),
        ARGS("--ws-port=0", "--help"),
        ARGS("--env-file", "/nonexistent", "--help"),
    };
    for (size_t f = 0; f < sizeof(forms) / sizeof(forms[0]); f++) {
        wsg_config_result rc;
        char *text = capture_load(forms[f], &rc);
        assert_int_equal(rc, WSG_CONFIG_EXIT);
        for (size_t i = 0; i < wsg_option_count; i++) {
            char flag[80];
            snprintf(flag, sizeof(flag), "--%s ", wsg_options[i].flag);
            expect_contains(text, flag);
            expect_contains(text, wsg_options[i].env);
        }
        /* Every group heading names an option that exists, so each shows. */
        static const char *const headings[] = {
            "Listeners and processes", "Admin API and dashboard", "Authentication and TLS",
            "Access control and limits", "Backends, sticky sessions and balancing",
            "Draining and failover", "Health checks of configured backends", "Connections",
            "Logging"};
        for (size_t h = 0; h < sizeof(headings) / sizeof(headings[0]); h++) {
            char line[80];
            snprintf(line, sizeof(line), "\n%s:\n", headings[h]);
            expect_contains(text, line);
        }
        expect_contains(text, "--env-file");
        expect_contains(text, "WSGATE_ENV_FILE");
        expect_contains(text, "--help");
        expect_contains(text, "--version");
        free(text);
    }
}

static void test_version(void **state)
{
    (void)state;
    const char *const *const forms[] = {ARGS("--version"), ARGS("-V")};
    for (size_t f = 0; f < 2; f++) {
        wsg_config_result rc;
        char *text = capture_load(forms[f], &rc);
        assert_int_equal(rc, WSG_CONFIG_EXIT);
        assert_memory_equal(text, "wsgate ", 7);
        assert_non_null(strchr(text, '\n'));
        free(text);
    }
}

/* ---- the env file ------------------------------------------------------ */

static void test_env_file_syntax(void **state)
{
    (void)state;
    const char *file = write_env_file("# wsgate settings\n"
                                      "\n"
                                      "   \n"
                                      "  # indented comment\n"
                                      "WS_PORT=9300\n"
                                      "export WEBSRV_PORT=8300\n"
                                      "  PING_INTERVAL = 30s  \n"
                                      "WSGATE_BIND=\"127.0.0.2\"\n"
                                      "WSGATE_DEFAULT_SERVICE='chat room'\n"
                                      "UPSTREAMS={\"chat\":[\"ws://10.0.0.5:3001/?a=b\"]}\n"
                                      "TRUSTED_PROXIES=\"\"\n"
                                      "PONG_TIMEOUT=2s\r\n"
                                      "LOG_LEVEL=debug");
    wsg_config cfg;
    expect_ok(ARGS("--env-file", file), NONE, &cfg);
    assert_int_equal(cfg.ws_port, 9300);
    assert_int_equal(cfg.http_port, 8300);
    assert_int_equal(cfg.ping_interval, 30000);
    assert_string_equal(cfg.bind, "127.0.0.2");
    assert_string_equal(cfg.default_service, "chat room");
    assert_string_equal(cfg.upstreams, "{\"chat\":[\"ws://10.0.0.5:3001/?a=b\"]}");
    assert_string_equal(cfg.trusted_proxies, "");
    assert_int_equal(cfg.pong_timeout, 2000);
    assert_int_equal(cfg.log_level, WSG_LOG_DEBUG);
    assert_string_equal(cfg.env_file, file);
    wsg_config_free(&cfg);
}

/* The file may be shared with the seed's other programs: their keys are
 * warned about and skipped. */
static void test_env_file_unknown_key_warns(void **state)
{
    (void)state;
    const char *file = write_env_file("WS_PORT=9400\n"
                                      "REDIS_URL=redis://localhost:6379\n"
                                      "WEBSRV_PORT=8400\n");
    wsg_config cfg;
    captured c;
    capture_begin(&c);
    char err[512];
    wsg_config_result rc = load(&cfg, ARGS("--env-file", file), NONE, err, sizeof(err));
    capture_end(&c);
    assert_int_equal(rc, WSG_CONFIG_OK);
    assert_int_equal(cfg.ws_port, 9400);
    assert_int_equal(cfg.http_port, 8400);
    wsg_config_free(&cfg);
    expect_contains(c.text, "REDIS_URL");
    expect_contains(c.text, "line 2");
}

static void test_env_file_line_without_equals(void **state)
{
    (void)state;
    const char *file = write_env_file("# comment\n"
                                      "WS_PORT=9001\n"
                                      "\n"
                                      "JUST_A_WORD\n"
                                      "WEBSRV_PORT=8001\n");
    expect_error(ARGS("--env-file", file), NONE, "line 4", file, NULL);
    file = write_env_file("export\n");
    expect_error(ARGS("--env-file", file), NONE, "line 1", NULL, NULL);
}

static void test_env_file_invalid_value(void **state)
{
    (void)state;
    const char *file = write_env_file("WS_PORT=9001\n"
                                      "PING_INTERVAL=soon\n");
    expect_error(ARGS("--env-file", file), NONE, "PING_INTERVAL", "--ping-interval", "line 2");
    expect_error(ARGS("--env-file", file), NONE, file, "soon", NULL);
}

/* A long value (a big UPSTREAMS map) must be read whole or refused: never
 * cut short with the rest taken as another line. */
static void test_env_file_long_line(void **state)
{
    (void)state;
    size_t cap = 12000;
    char *content = malloc(cap);
    assert_non_null(content);
    size_t len = (size_t)snprintf(content, cap, "UPSTREAMS={\"chat\":[");
    for (int i = 0; len < 9500; i++)
        len += (size_t)snprintf(content + len, cap - len, "%s\"ws://10.0.%d.%d:3001/?k=v\"",
                                i ? "," : "", i / 250, i % 250);
    len += (size_t)snprintf(content + len, cap - len, "]}\nWS_PORT=9500\n");
    const char *file = write_env_file(content);

    const char *value = content + strlen("UPSTREAMS=");
    size_t value_len = (size_t)(strchr(value, '\n') - value);
    wsg_config cfg;
    char err[512];
    captured c;
    capture_begin(&c);
    wsg_config_result rc = load(&cfg, ARGS("--env-file", file), NONE, err, sizeof(err));
    capture_end(&c);
    size_t got_len = cfg.upstreams ? strlen(cfg.upstreams) : 0;
    bool whole = got_len == value_len && memcmp(cfg.upstreams, value, value_len) == 0;
    uint16_t ws_port = cfg.ws_port;
    wsg_config_free(&cfg);
    free(content);
    if (rc == WSG_CONFIG_OK) {
        if (!whole)
            fail_msg("UPSTREAMS of %zu bytes was read as %zu bytes", value_len, got_len);
        assert_int_equal(ws_port, 9500);
    } else {
        assert_int_equal(rc, WSG_CONFIG_ERROR);
        expect_contains(err, "line 1");
    }
}

/* ---- validation -------------------------------------------------------- */

static void test_auth_key(void **state)
{
    (void)state;
    static const char *const refused[] = {
        "short",
        "fifteen-chars!!",
        "your_secret_key_here",
        "your_secret_key",
        "change-this-secret-key",
        "AbCd1234EfGh5678IjKl9012MnOp3456",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char env[128];
        char flag[128];
        char line[128];
        snprintf(env, sizeof(env), "GATEWAY_AUTH_KEY=%s", refused[i]);
        snprintf(flag, sizeof(flag), "--gateway-auth-key=%s", refused[i]);
        snprintf(line, sizeof(line), "GATEWAY_AUTH_KEY=%s\n", refused[i]);
        const char *file = write_env_file(line);
        expect_error(NONE, ARGS(env), "GATEWAY_AUTH_KEY", NULL, NULL);
        expect_error(ARGS(flag), NONE, "GATEWAY_AUTH_KEY", NULL, NULL);
        expect_error(ARGS("--env-file", file), NONE, "GATEWAY_AUTH_KEY", NULL, NULL);
        assert_non_null(wsg_config_check_auth_key(refused[i]));
    }

    static const char good[] = "q7Vd0pX2mN4sL8tR1wY6zB3cF5hJ9kGe";
    assert_int_equal(strlen(good), 32);
    assert_null(wsg_config_check_auth_key(good));
    assert_null(wsg_config_check_auth_key("sixteen-chars-ok"));
    wsg_config cfg;
    char env[64];
    snprintf(env, sizeof(env), "GATEWAY_AUTH_KEY=%s", good);
    expect_ok(NONE, ARGS(env), &cfg);
    assert_string_equal(cfg.auth_key, good);
    wsg_config_free(&cfg);

    expect_ok(ARGS("--gateway-auth-key", "sixteen-chars-ok"), NONE, &cfg);
    assert_string_equal(cfg.auth_key, "sixteen-chars-ok");
    wsg_config_free(&cfg);

    /* Empty means unset: a key is generated at start. */
    expect_ok(NONE, ARGS("GATEWAY_AUTH_KEY="), &cfg);
    assert_null(cfg.auth_key);
    wsg_config_free(&cfg);
    expect_ok(ARGS("--gateway-auth-key="), ARGS(env), &cfg);
    assert_null(cfg.auth_key);
    wsg_config_free(&cfg);
    const char *file = write_env_file("GATEWAY_AUTH_KEY=\"\"\n");
    expect_ok(ARGS("--env-file", file), NONE, &cfg);
    assert_null(cfg.auth_key);
    wsg_config_free(&cfg);

    /* A flag overrides a refused value from the environment. */
    expect_ok(ARGS("--gateway-auth-key", good), ARGS("GATEWAY_AUTH_KEY=your_secret_key"), &cfg);
    assert_string_equal(cfg.auth_key, good);
    wsg_config_free(&cfg);
}

static void test_ports_must_differ(void **state)
{
    (void)state;
    expect_error(NONE, ARGS("WS_PORT=8000"), "WS_PORT", "WEBSRV_PORT", NULL);
    expect_error(ARGS("--websrv-port=9000"), NONE, "WS_PORT", "WEBSRV_PORT", NULL);
    expect_error(ARGS("--ws-port", "8080", "--websrv-port", "8080"), NONE, "--ws-port",
                 "--websrv-port", "8080");
    wsg_config cfg;
    expect_ok(ARGS("--ws-port", "8000", "--websrv-port", "9000"), NONE, &cfg);
    wsg_config_free(&cfg);
}

static void test_default_service_must_not_be_empty(void **state)
{
    (void)state;
    expect_error(NONE, ARGS("WSGATE_DEFAULT_SERVICE="), "WSGATE_DEFAULT_SERVICE",
                 "--default-service", NULL);
}

/* An error halfway through leaves some fields set: free must release them
 * (run under ASan to check). */
static void test_free_after_error(void **state)
{
    (void)state;
    const char *file = write_env_file("WSGATE_BACKENDS=a:1,b:2\nUPSTREAMS={}\n");
    wsg_config cfg;
    char err[512];
    assert_int_equal(load(&cfg, ARGS("--env-file", file, "--backend", "c:3", "--bind", "::",
                                     "--ws-port=0"),
                          ARGS("GATEWAY_AUTH_KEY=q7Vd0pX2mN4sL8tR1wY6zB3cF5hJ9kGe"), err,
                          sizeof(err)),
                     WSG_CONFIG_ERROR);
    expect_contains(err, "WS_PORT");
    wsg_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_table_defaults_are_valid),
        cmocka_unit_test(test_precedence_all_combinations),
        cmocka_unit_test(test_env_file_flag_beats_env_var),
        cmocka_unit_test(test_default_env_file_in_working_directory),
        cmocka_unit_test(test_missing_env_file),
        cmocka_unit_test(test_flag_forms),
        cmocka_unit_test(test_bool_flag),
        cmocka_unit_test(test_unknown_flag_and_positional),
        cmocka_unit_test(test_backend_lists),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_duration_options),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_size_options),
        cmocka_unit_test(test_ports),
        cmocka_unit_test(test_whole_number_options),
        cmocka_unit_test(test_log_options),
        cmocka_unit_test(test_choice_options),
        cmocka_unit_test(test_unrelated_environment_ignored),
        cmocka_unit_test(test_help_lists_every_option),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_env_file_syntax),
        cmocka_unit_test(test_env_file_unknown_key_warns),
        cmocka_unit_test(test_env_file_line_without_equals),
        cmocka_unit_test(test_env_file_invalid_value),
        cmocka_unit_test(test_env_file_long_line),
        cmocka_unit_test(test_auth_key),
        cmocka_unit_test(test_ports_must_differ),
        cmocka_unit_test(test_default_service_must_not_be_empty),
        cmocka_unit_test(test_free_after_error),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
