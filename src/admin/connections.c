/* GET /api/connections and POST /disconnect.
 *
 * Connections belong to the worker that accepted them, and only that
 * worker's thread may touch them. So a request here asks every worker in
 * turn (wsg_worker_call), each answers for its own connections, and the last
 * one hands the result back to the worker that holds the HTTP request,
 * which answers. No lock is shared with the message path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "ws/ws.h"

#define DEFAULT_LIMIT 100
#define MAX_LIMIT 1000

typedef enum gather_kind { LIST, DISCONNECT } gather_kind;

typedef struct gather {
    gather_kind kind;
    atomic_int remaining;      /* workers still to answer */
    atomic_uint closed;        /* DISCONNECT: connections closed */
    wsg_admin *origin;         /* the admin of the worker holding the request */
    wsg_http_conn *conn;       /* NULL if the client went away meanwhile */
    json_t **parts;            /* LIST: one array per worker */
    size_t offset;
    size_t limit;
    char filter_client[256];   /* LIST: only this client; DISCONNECT: the target */
    size_t filter_client_len;
    uint64_t conn_id;
    uint16_t code;
    char reason[124];
} gather;

static void gather_free(gather *g)
{
    if (g->parts) {
        for (unsigned i = 0; i < g->origin->gw->proxy_count; i++)
            json_decref(g->parts[i]);
        free(g->parts);
    }
    free(g);
}

static void answer_list(gather *g, wsg_reply *reply)
{
    json_t *page = json_array();
    size_t total = 0;
    for (unsigned w = 0; w < g->origin->gw->proxy_count; w++) {
        size_t i;
        json_t *item;
        json_array_foreach(g->parts[w], i, item) {
            if (total >= g->offset && json_array_size(page) < g->limit)
                json_array_append(page, item);
            total++;
        }
    }
    wsg_reply_json(reply, 200,
                   json_pack("{s:I, s:I, s:I, s:o}", "total", (json_int_t)total, "offset",
                             (json_int_t)g->offset, "limit", (json_int_t)g->limit,
                             "connections", page));
}

/* Runs on the origin worker once every worker has answered. */
static void finish(wsg_worker *w, void *arg)
{
    gather *g = arg;
    wsg_reply reply = {0};
    (void)w;
    if (g->conn) {
        if (g->kind == LIST) {
            answer_list(g, &reply);
        } else {
            unsigned n = atomic_load(&g->closed);
            if (n == 0)
                wsg_reply_error(&reply, 404, "no such connection");
            else
                wsg_reply_json(&reply, 200, json_pack("{s:b, s:s, s:I}", "success", 1,
                                                      "message", "Disconnected", "disconnected",
                                                      (json_int_t)n));
        }
        wsg_admin_finish(g->conn, &reply);
    }
    gather_free(g);
}

static void part_done(gather *g)
{
    if (atomic_fetch_sub(&g->remaining, 1) != 1)
        return;
    if (wsg_worker_call(g->origin->worker, finish, g) < 0) {
        /* The origin is stopping: its connection is gone too. */
        gather_free(g);
    }
}

typedef struct list_ctx {
    gather *g;
    json_t *out;
} list_ctx;

static void add_connection(void *ctx, const wsg_connection_info *info)
{
    list_ctx *c = ctx;
    char peer[64];
    if (c->g->filter_client_len &&
        !wsg_str_eq(wsg_str_make(info->client_id, info->client_id_len),
                    wsg_str_make(c->g->filter_client, c->g->filter_client_len)))
        return;
    wsg_peer_format(&info->peer, peer, sizeof(peer));
    json_array_append_new(
        c->out, json_pack("{s:I, s:s%, s:s, s:s, s:s, s:I, s:I, s:I}", "id", (json_int_t)info->id,
                          "clientId", info->client_id, info->client_id_len, "backend",
                          info->backend, "state", info->state, "peer", peer, "ageMs",
                          (json_int_t)info->age_ms, "bytesIn", (json_int_t)info->bytes_in,
                          "bytesOut", (json_int_t)info->bytes_out));
}

/* Runs on each worker in turn. */
static void work(wsg_worker *w, void *arg)
{
    gather *g = arg;
    wsg_proxy *p = g->origin->gw->proxies[w->index];
    if (g->kind == LIST) {
        list_ctx c = {g, json_array()};
        wsg_proxy_each_connection(p, add_connection, &c);
        g->parts[w->index] = c.out;
    } else {
        unsigned n = wsg_proxy_disconnect(p, wsg_str_make(g->filter_client, g->filter_client_len),
                                          g->conn_id, g->code, g->reason);
        atomic_fetch_add(&g->closed, n);
    }
    part_done(g);
}

static void start(wsg_admin *a, const wsg_request *req, gather *g, wsg_reply *reply)
{
    unsigned n = a->gw->proxy_count;
    g->origin = a;
    atomic_init(&g->remaining, (int)n);
    atomic_init(&g->closed, 0);
    wsg_admin_defer(req->conn, &g->conn);
    reply->status = 0;
    for (unsigned i = 0; i < n; i++) {
        /* g is freed only when all n parts are done, so not before this loop ends. */
        // NOLINTNEXTLINE(clang-analyzer-unix.Malloc)
        if (wsg_worker_call(a->gw->proxies[i]->worker, work, g) < 0)
            part_done(g);
    }
}

static size_t query_number(wsg_str query, const char *name, size_t def, size_t max)
{
    unsigned long long v;
    wsg_str s = wsg_http_query_param(query, wsg_str_cstr(name));
    if (s.p == NULL || wsg_str_to_u64(s, &v) < 0)
        return def;
    return v > max ? max : (size_t)v;
}

void wsg_api_connections(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    if (!wsg_admin_authorized(a, req, NULL)) {
        wsg_reply_error(reply, 401, "Invalid authentication key");
        return;
    }
    gather *g = calloc(1, sizeof(*g));
    json_t **parts = calloc(a->gw->proxy_count, sizeof(*parts));
    if (g == NULL || parts == NULL) {
        free(g);
        free(parts);
        wsg_reply_error(reply, 503, "out of memory");
        return;
    }
    g->kind = LIST;
    g->parts = parts;
    g->offset = query_number(req->head->query, "offset", 0, SIZE_MAX);
    g->limit = query_number(req->head->query, "limit", DEFAULT_LIMIT, MAX_LIMIT);
    wsg_str client = wsg_http_query_param(req->head->query, WSG_STR("clientId"));
    if (client.len > 0 && client.len < sizeof(g->filter_client)) {
        memcpy(g->filter_client, client.p, client.len);
        g->filter_client_len = client.len;
    }
    start(a, req, g, reply);
}

/* Reads {"clientId"} or {"connectionId"}, "code" and "reason". Returns NULL
 * when acceptable, else the message for a 400. */
static const char *read_target(json_t *body, gather *g)
{
    json_t *client = json_object_get(body, "clientId");
    json_t *conn = json_object_get(body, "connectionId");
    json_t *code = json_object_get(body, "code");
    json_t *reason = json_object_get(body, "reason");
    if ((client == NULL) == (conn == NULL))
        return "give exactly one of clientId and connectionId";
    if (client) {
        if (!json_is_string(client) || json_string_length(client) == 0 ||
            json_string_length(client) >= sizeof(g->filter_client))
            return "clientId: must be a non-empty string";
        memcpy(g->filter_client, json_string_value(client), json_string_length(client));
        g->filter_client_len = json_string_length(client);
    } else if (json_is_integer(conn) && json_integer_value(conn) > 0) {
        g->conn_id = (uint64_t)json_integer_value(conn);
    } else if (json_is_string(conn)) {
        unsigned long long v;
        if (wsg_str_to_u64(wsg_str_cstr(json_string_value(conn)), &v) < 0 || v == 0)
            return "connectionId: must be a connection id from /api/connections";
        g->conn_id = v;
    } else {
        return "connectionId: must be a connection id from /api/connections";
    }
    g->code = WSG_WS_CLOSE_NORMAL;
    if (code) {
        if (!json_is_integer(code) || !wsg_ws_close_code_valid((unsigned)json_integer_value(code)))
            return "code: must be a valid close code (1000-1003, 1007-1014, 3000-4999)";
        g->code = (uint16_t)json_integer_value(code);
    }
    snprintf(g->reason, sizeof(g->reason), "%s", "disconnected by an operator");
    if (reason) {
        if (!json_is_string(reason) || json_string_length(reason) > 123 ||
            !wsg_utf8_valid((const uint8_t *)json_string_value(reason),
                            json_string_length(reason)))
            return "reason: must be a string of at most 123 bytes";
        snprintf(g->reason, sizeof(g->reason), "%s", json_string_value(reason));
    }
    return NULL;
}

void wsg_api_disconnect(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL || !json_is_object(body)) {
        json_decref(body);
        wsg_reply_error(reply, 400, "the body must be a JSON object, e.g. {\"clientId\": \"c1\"}");
        return;
    }
    if (!wsg_admin_authorized(a, req, body)) {
        json_decref(body);
        wsg_reply_error(reply, 401, "Invalid authentication key");
        return;
    }
    gather *g = calloc(1, sizeof(*g));
    if (g == NULL) {
        json_decref(body);
        wsg_reply_error(reply, 503, "out of memory");
        return;
    }
    g->kind = DISCONNECT;
    const char *bad = read_target(body, g);
    json_decref(body);
    if (bad) {
        free(g);
        wsg_reply_error(reply, 400, bad);
        return;
    }
    start(a, req, g, reply);
}
