/* The dashboard: one page, one script, one style sheet, all embedded in
 * the binary (see src/admin/dashboard/), served with headers that keep
 * the page from loading anything from elsewhere or being framed. */
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"

extern const unsigned char wsg_asset_index_html[];
extern const size_t wsg_asset_index_html_len;
extern const unsigned char wsg_asset_dashboard_js[];
extern const size_t wsg_asset_dashboard_js_len;
extern const unsigned char wsg_asset_dashboard_css[];
extern const size_t wsg_asset_dashboard_css_len;

static const char security_headers[] =
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'\r\n";

static void asset(wsg_reply *reply, const unsigned char *data, size_t len, const char *type)
{
    reply->body = malloc(len + 1);
    if (reply->body == NULL) {
        wsg_reply_error(reply, 503, "out of memory");
        return;
    }
    memcpy(reply->body, data, len);
    reply->body[len] = '\0';
    reply->status = 200;
    reply->content_type = type;
    reply->extra_headers = security_headers;
}

void wsg_dashboard_page(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)a;
    (void)req;
    asset(reply, wsg_asset_index_html, wsg_asset_index_html_len, "text/html; charset=utf-8");
}

void wsg_dashboard_script(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)a;
    (void)req;
    asset(reply, wsg_asset_dashboard_js, wsg_asset_dashboard_js_len,
          "text/javascript; charset=utf-8");
}

void wsg_dashboard_style(wsg_admin *a, const wsg_request *req, wsg_reply *reply)
{
    (void)a;
    (void)req;
    asset(reply, wsg_asset_dashboard_css, wsg_asset_dashboard_css_len, "text/css; charset=utf-8");
}
