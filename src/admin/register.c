/* The registration API of seed 000: POST /register, /heartbeat and
 * /unregister, so that a backend written for that gateway works unchanged.
 *
 * The seed's README and its running code disagree: the code answers
 * {"success": true, "serverId"} and reads `id` where the README says
 * `serverId`. Real backends follow the code, so both names are read and
 * answers carry both `success` and `message`. JavaScript backends send
 * numbers as strings ("8080"): accepted. The key is checked before
 * anything else but the JSON itself; every other mistake gets a 400 that
 * names the field.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "core/log.h"

#define MAX_ID 63
#define MAX_HOST 253

typedef struct field_error {
    char text[200];
} field_error;

/* Parses the body as a JSON object. NULL with the 400 reply set. */
static json_t *parse_body(const wsg_request *req, wsg_reply *reply)
{
    json_error_t jerr;
    char why[256];
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL) {
        snprintf(why, sizeof(why), "malformed JSON: %s (line %d, column %d)", jerr.text,
                 jerr.line, jerr.column);
        wsg_reply_error(reply, 400, why);
        return NULL;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        wsg_reply_error(reply, 400, "the body must be a JSON object");
        return NULL;
    }
    return body;
}

static bool authorized(wsg_admin *a, const wsg_request *req, json_t *body, wsg_reply *reply)
{
    const wsg_gateway *gw = a->gw;
    bool from_allowed = gw->registration_net_count == 0;
    for (size_t i = 0; i < gw->registration_net_count && !from_allowed; i++)
        from_allowed = wsg_cidr_match(&gw->registration_nets[i], req->peer->family, req->peer->ip);
    if (!from_allowed) {
        char client[64];
        wsg_peer_format(req->peer, client, sizeof(client));
        wsg_log_warn("registration refused: address not in REGISTRATION_NETWORKS",
                     "client=%s", client);
        wsg_reply_error(reply, 403, "registration is not allowed from this address");
        return false;
    }
    if (wsg_admin_authorized(a, req, body))
        return true;
    wsg_reply_json(reply, 401, json_pack("{s:b, s:s, s:s}", "success", 0, "error",
                                         "Invalid authentication key", "message",
                                         "Invalid authentication key"));
    return false;
}

/* A string field; `required` makes absence an error. */
static int get_string(json_t *body, const char *name, bool required, size_t max,
                      const char **out, field_error *e)
{
    json_t *v = json_object_get(body, name);
    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        if (required)
            snprintf(e->text, sizeof(e->text), "%s: missing", name);
        return required ? -1 : 0;
    }
    if (!json_is_string(v)) {
        snprintf(e->text, sizeof(e->text), "%s: must be a string", name);
        return -1;
    }
    size_t len = json_string_length(v);
    if (len == 0 || len > max || strlen(json_string_value(v)) != len) {
        snprintf(e->text, sizeof(e->text), "%s: must be 1 to %zu characters", name, max);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* A number, or a string holding one ("8080"). Returns 1 when present,
 * 0 when absent, -1 when malformed. */
static int get_number(json_t *body, const char *name, double *out, field_error *e)
{
    json_t *v = json_object_get(body, name);
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 1;
    }
    if (json_is_string(v) && json_string_length(v) > 0) {
        char *end;
        errno = 0;
        double d = strtod(json_string_value(v), &end);
        if (*end == '\0' && errno == 0 && isfinite(d)) {
            *out = d;
            return 1;
        }
    }
    snprintf(e->text, sizeof(e->text), "%s: must be a number", name);
    return -1;
}

/* A whole number in [min, max]. */
static int get_uint(json_t *body, const char *name, bool required, double min, double max,
                    uint32_t *out, field_error *e)
{
    double d = 0;
    int rc = get_number(body, name, &d, e);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        if (required)
            snprintf(e->text, sizeof(e->text), "%s: missing", name);
        return required ? -1 : 0;
    }
    if (d != floor(d) || d < min || d > max) {
        snprintf(e->text, sizeof(e->text), "%s: must be a whole number from %.0f to %.0f", name,
                 min, max);
        return -1;
    }
    *out = (uint32_t)d;
    return 1;
}

/* The backend's id: `serverId` or `id` (both seen in the wild). */
static int get_id(json_t *body, const char *first, const char *second, const char **id,
                  field_error *e)
{
    const char *a = NULL;
    const char *b = NULL;
    if (get_string(body, first, false, MAX_ID, &a, e) < 0 ||
        get_string(body, second, false, MAX_ID, &b, e) < 0)
        return -1;
    if (a && b && strcmp(a, b) != 0) {
        snprintf(e->text, sizeof(e->text), "%s and %s: both given and different", first, second);
        return -1;
    }
    *id = a ? a : b;
    if (*id == NULL) {
        snprintf(e->text, sizeof(e->text), "%s: missing", first);
        return -1;
    }
    /* Ids appear in logs, metrics labels and stats: plain characters only. */
    for (const char *c = *id; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || strchr("._:@-", *c) != NULL;
        if (!ok) {
            snprintf(e->text, sizeof(e->text),
                     "%s: letters, digits and . _ : @ - only", a ? first : second);
            return -1;
        }
    }
    return 0;
}

static bool host_valid(const char *host)
{
    for (const char *c = host; *c; c++) {
        bool ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == ':' || *c == '_';
        if (!ok)
            return false;
    }
    return true;
}

/* ---- /register ---------------------------------------------------------- */

typedef struct pending {
    uv_getaddrinfo_t req;
    wsg_admin *admin;
    wsg_http_conn *conn; /* NULL once the client went away */
    wsg_backend_spec spec;
    char id[MAX_ID + 1];
    char host[MAX_HOST + 1];
    char public_host[MAX_HOST + 1];
    char service[64];
    char group[64];
} pending;

static int read_spec(json_t *body, pending *p, field_error *e)
{
    const char *id;
    const char *host;
    const char *public_host = NULL;
    const char *service = NULL;
    const char *group = NULL;
    uint32_t port = 0;
    uint32_t ws_port = 0;
    uint32_t max = 0;
    uint32_t weight = 1;
    json_t *tls = json_object_get(body, "tls");
    if (tls && !json_is_boolean(tls)) {
        snprintf(e->text, sizeof(e->text), "tls: must be true or false");
        return -1;
    }
    if (get_id(body, "id", "serverId", &id, e) < 0 ||
        get_string(body, "host", true, MAX_HOST, &host, e) < 0 ||
        get_string(body, "publicHost", false, MAX_HOST, &public_host, e) < 0 ||
        get_uint(body, "port", true, 1, 65535, &port, e) < 0 ||
        get_uint(body, "wsPort", true, 1, 65535, &ws_port, e) < 0 ||
        get_uint(body, "maxConnections", false, 0, 100000000, &max, e) < 0 ||
        get_string(body, "service", false, 63, &service, e) < 0 ||
        get_string(body, "group", false, 63, &group, e) < 0 ||
        get_uint(body, "weight", false, 1, 100, &weight, e) < 0)
        return -1;
    if (!host_valid(host)) {
        snprintf(e->text, sizeof(e->text), "host: not a host name or IP address");
        return -1;
    }
    if (service && !wsg_registry_name_valid(wsg_str_cstr(service))) {
        snprintf(e->text, sizeof(e->text), "service: letters, digits, '-', '_' and '.' only");
        return -1;
    }
    if (service && wsg_registry_name_reserved(wsg_str_cstr(service))) {
        snprintf(e->text, sizeof(e->text), "service: \"%s\" is reserved", service);
        return -1;
    }
    snprintf(p->id, sizeof(p->id), "%s", id);
    snprintf(p->host, sizeof(p->host), "%s", host);
    snprintf(p->public_host, sizeof(p->public_host), "%s", public_host ? public_host : host);
    snprintf(p->service, sizeof(p->service), "%s", service ? service : "");
    snprintf(p->group, sizeof(p->group), "%s", group ? group : "");
    p->spec = (wsg_backend_spec){
        .id = p->id,
        .host = p->host,
        .public_host = p->public_host,
        .port = (uint16_t)port,
        .ws_port = (uint16_t)ws_port,
        .max_connections = max,
        .service = service ? p->service : NULL,
        .group = p->group,
        .weight = weight,
        .tls = json_is_true(tls),
    };
    return 0;
}

/* Registers with a resolved address and says so. */
static void complete(pending *p, const struct sockaddr_storage *addr, socklen_t addrlen,
                     wsg_reply *reply)
{
    char err[200];
    int rc = wsg_registry_register(p->admin->gw->registry, &p->spec, addr, addrlen, err,
                                   sizeof(err));
    if (rc < 0) {
        wsg_reply_error(reply, rc == WSG_REGISTER_CONFLICT ? 409 : 400, err);
        return;
    }
    wsg_reply_json(reply, 200,
                   json_pack("{s:b, s:s, s:s}", "success", 1, "message",
                             "Server registered successfully", "serverId", p->id));
}

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    pending *p = req->data;
    wsg_reply reply = {0};
    if (status < 0 || res == NULL) {
        char why[300];
        snprintf(why, sizeof(why), "host: cannot resolve \"%s\": %s", p->host,
                 uv_strerror(status));
        wsg_log_warn("backend registration refused", "backend=%s why=\"cannot resolve host\"",
                     p->id);
        wsg_reply_error(&reply, 400, why);
    } else {
        struct sockaddr_storage addr;
        memcpy(&addr, res->ai_addr, res->ai_addrlen);
        complete(p, &addr, res->ai_addrlen, &reply);
    }
    uv_freeaddrinfo(res);
    if (p->conn)
        wsg_admin_finish(p->conn, &reply);
    else
        free(reply.body);
    free(p);
}

void wsg_api_register(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    field_error e;
    json_t *body = parse_body(req, reply);
    if (body == NULL || !authorized(a, req, body, reply)) {
        json_decref(body);
        return;
    }
    pending *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        json_decref(body);
        wsg_reply_error(reply, 503, "out of memory");
        return;
    }
    p->admin = a;
    int rc = read_spec(body, p, &e);
    json_decref(body);
    if (rc < 0) {
        free(p);
        wsg_reply_error(reply, 400, e.text);
        return;
    }
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char literal[MAX_HOST + 3];
    snprintf(literal, sizeof(literal), strchr(p->host, ':') ? "[%s]" : "%s", p->host);
    if (wsg_addr_parse(literal, p->spec.ws_port, &addr, &addrlen) == 0) {
        complete(p, &addr, addrlen, reply);
        free(p);
        return;
    }
    /* A host name: look it up off the loop and answer when it is known. */
    char port[8];
    snprintf(port, sizeof(port), "%u", p->spec.ws_port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    p->req.data = p;
    if (uv_getaddrinfo(&a->worker->loop, &p->req, resolved, p->host, port, &hints) < 0) {
        free(p);
        wsg_reply_error(reply, 503, "cannot look up host names right now");
        return;
    }
    wsg_admin_defer(req->conn, &p->conn);
    reply->status = 0;
}

/* ---- /heartbeat and /unregister ---------------------------------------- */

void wsg_api_heartbeat(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    field_error e;
    const char *id;
    uint32_t active = 0;
    wsg_heartbeat hb = {.cpu_usage = -1, .ram_usage = -1, .ram_total = -1};
    json_t *body = parse_body(req, reply);
    if (body == NULL || !authorized(a, req, body, reply)) {
        json_decref(body);
        return;
    }
    if (get_id(body, "serverId", "id", &id, &e) < 0 ||
        get_uint(body, "activeConnections", false, 0, 4294967295.0, &active, &e) < 0 ||
        get_number(body, "cpuUsage", &hb.cpu_usage, &e) < 0 ||
        get_number(body, "ramUsage", &hb.ram_usage, &e) < 0 ||
        get_number(body, "ramTotal", &hb.ram_total, &e) < 0) {
        json_decref(body);
        wsg_reply_error(reply, 400, e.text);
        return;
    }
    hb.active_connections = active;
    if (wsg_registry_heartbeat(a->gw->registry, id, &hb) < 0) {
        json_decref(body);
        wsg_reply_json(reply, 404,
                       json_pack("{s:b, s:s, s:s}", "success", 0, "error", "Server not found",
                                 "message", "Server not registered: register again"));
        return;
    }
    json_decref(body);
    wsg_reply_json(reply, 200,
                   json_pack("{s:b, s:s}", "success", 1, "message", "Heartbeat received"));
}

void wsg_api_unregister(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    field_error e;
    const char *id;
    json_t *body = parse_body(req, reply);
    if (body == NULL || !authorized(a, req, body, reply)) {
        json_decref(body);
        return;
    }
    if (get_id(body, "serverId", "id", &id, &e) < 0) {
        json_decref(body);
        wsg_reply_error(reply, 400, e.text);
        return;
    }
    int rc = wsg_registry_unregister(a->gw->registry, id);
    json_decref(body);
    if (rc < 0) {
        wsg_reply_json(reply, 404, json_pack("{s:b, s:s, s:s}", "success", 0, "error",
                                             "Server not found", "message", "Server not found"));
        return;
    }
    wsg_reply_json(reply, 200,
                   json_pack("{s:b, s:s}", "success", 1, "message",
                             "Server unregistered successfully"));
}
