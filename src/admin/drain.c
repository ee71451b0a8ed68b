/* POST /drain and /undrain: take a backend, or the whole gateway, out of
 * rotation for a deploy, and back.
 *
 *   {"serverId": "b1"}  drains backend b1: no new sessions; its sessions move
 *                       to other backends at a message boundary (or finish,
 *                       with WSGATE_DRAIN_MODE=finish)
 *   {"group": "blue"}   drains every backend of a group (blue-green deploys)
 *   {} or no body       drains the gateway: readiness turns 503 and new
 *                       WebSocket clients are refused; sessions stay
 *
 * Authenticated like every admin call: authKey in the body or a bearer
 * token.
 */
#include <string.h>

#include "admin/admin.h"
#include "core/log.h"

static json_t *optional_body(const wsg_request *req, wsg_reply *reply)
{
    json_error_t jerr;
    if (req->body_len == 0)
        return json_object();
    json_t *body = json_loadb(req->body, req->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL || !json_is_object(body)) {
        json_decref(body);
        wsg_reply_error(reply, 400, "the body must be a JSON object, e.g. {\"serverId\": \"b1\"}");
        return NULL;
    }
    return body;
}

static void drain_group(wsg_admin *a, const char *group, bool on, wsg_reply *reply)
{
    size_t backends;
    long sessions = wsg_registry_drain_group(a->gw->registry, group, on, &backends);
    if (backends == 0) {
        wsg_reply_error(reply, 404, "no backend in that group");
        return;
    }
    wsg_reply_json(reply, 200,
                   json_pack("{s:b, s:s, s:s, s:I, s:I}", "success", 1, "message",
                             on ? "Group draining" : "Group taken back", "group", group,
                             "backends", (json_int_t)backends, "sessions", (json_int_t)sessions));
}

static void drain_gateway(wsg_admin *a, bool on, wsg_reply *reply)
{
    if (!on && atomic_load(&a->gw->stopping)) {
        wsg_reply_error(reply, 409, "the gateway is shutting down: it cannot be taken back");
        return;
    }
    atomic_store(&a->gw->draining, on);
    unsigned sessions = wsg_gateway_connections(a->gw);
    wsg_log_info(on ? "gateway draining: new clients refused" : "gateway taken back",
                 "sessions=%u", sessions);
    wsg_reply_json(reply, 200,
                   json_pack("{s:b, s:s, s:I}", "success", 1, "message",
                             on ? "Gateway draining" : "Gateway accepting again", "sessions",
                             (json_int_t)sessions));
}

static void drain_server(wsg_admin *a, const char *id, bool on, wsg_reply *reply)
{
    long sessions = wsg_registry_drain(a->gw->registry, id, on);
    if (sessions < 0) {
        wsg_reply_error(reply, 404, "Server not found");
        return;
    }
    wsg_reply_json(reply, 200,
                   json_pack("{s:b, s:s, s:s, s:I}", "success", 1, "message",
                             on ? "Server draining" : "Server taken back", "serverId", id,
                             "sessions", (json_int_t)sessions));
}

/* {"serverId"} (or "id") names a backend, {"group"} a group of them, and an
 * empty body the whole gateway. */
static void set_drain(wsg_admin *a, const wsg_request *req, wsg_reply *reply, bool on)
{
    json_t *body = optional_body(req, reply);
    if (body == NULL)
        return;
    json_t *id = json_object_get(body, "serverId");
    if (id == NULL)
        id = json_object_get(body, "id");
    json_t *group = json_object_get(body, "group");
    if (!wsg_admin_authorized(a, req, body))
        wsg_reply_json(reply, 401, json_pack("{s:b, s:s, s:s}", "success", 0, "error",
                                             "Invalid authentication key", "message",
                                             "Invalid authentication key"));
    else if (id && !json_is_string(id))
        wsg_reply_error(reply, 400, "serverId: must be a string");
    else if (group && !json_is_string(group))
        wsg_reply_error(reply, 400, "group: must be a string");
    else if (id)
        drain_server(a, json_string_value(id), on, reply);
    else if (group)
        drain_group(a, json_string_value(group), on, reply);
    else
        drain_gateway(a, on, reply);
    json_decref(body);
}

void wsg_api_drain(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    set_drain(a, req, reply, true);
}

void wsg_api_undrain(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    set_drain(a, req, reply, false);
}
