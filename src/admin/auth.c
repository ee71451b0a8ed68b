/* Who may change things: whoever holds the gateway key, in the JSON body
 * ("authKey", as seed 000's backends send it) or as a bearer token, or
 * whoever logged in to the dashboard with it (a session cookie). */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>

#include "admin/admin.h"

bool wsg_admin_key_matches(const wsg_admin *a, const char *candidate, size_t len)
{
    const char *key = a->gw->cfg->auth_key;
    unsigned char want[EVP_MAX_MD_SIZE];
    unsigned char got[EVP_MAX_MD_SIZE];
    unsigned int wn = 0;
    unsigned int gn = 0;
    if (candidate == NULL || key == NULL)
        return false;
    /* Comparing digests keeps the time independent of where the strings
     * differ and of their lengths. */
    EVP_Digest(key, strlen(key), want, &wn, EVP_sha256(), NULL);
    EVP_Digest(candidate, len, got, &gn, EVP_sha256(), NULL);
    return wn == gn && CRYPTO_memcmp(want, got, wn) == 0;
}

bool wsg_admin_authorized(const wsg_admin *a, const wsg_request *req, const json_t *body)
{
    json_t *key = body ? json_object_get(body, "authKey") : NULL;
    if (json_is_string(key) &&
        wsg_admin_key_matches(a, json_string_value(key), json_string_length(key)))
        return true;
    wsg_str auth = wsg_http_header_get(req->head, WSG_STR("Authorization"));
    if (auth.len > 7 && wsg_str_eq_nocase(wsg_str_make(auth.p, 7), WSG_STR("Bearer "))) {
        wsg_str token = wsg_str_trim(wsg_str_make(auth.p + 7, auth.len - 7));
        if (wsg_admin_key_matches(a, token.p, token.len))
            return true;
    }
    return wsg_login_valid((wsg_admin *)a, req);
}
