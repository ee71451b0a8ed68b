/* Per-address limits: token buckets for new upgrades and HTTP requests,
 * and a count of open connections, for every client address the gateway
 * sees, shared by the workers.
 *
 * Sixteen shards with a lock each; touched once per upgrade or request,
 * never per message. Addresses in the exempt list (loopback by default, so
 * local load tests and sidecar proxies work) are never limited. Entries of
 * addresses with no connection and full buckets are swept after a minute.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "net/net.h"

/* An idle address is forgotten after this long. */
#define IDLE_MS 60000
#define INITIAL_BUCKETS 256

static size_t shard_of(uint32_t hash)
{
    return hash % WSG_CLIENT_SHARDS;
}

static uint32_t hash_ip(int family, const uint8_t *ip)
{
    return (uint32_t)wsg_hash(ip, family == AF_INET ? 4 : 16) ^ (uint32_t)family;
}

void wsg_clients_init(wsg_clients *t, const wsg_client_limits *limits)
{
    memset(t, 0, sizeof(*t));
    t->limits = *limits;
    for (size_t i = 0; i < WSG_CLIENT_SHARDS; i++) {
        pthread_mutex_init(&t->shards[i].lock, NULL);
        t->shards[i].bucket_count = INITIAL_BUCKETS;
        t->shards[i].buckets = calloc(INITIAL_BUCKETS, sizeof(*t->shards[i].buckets));
        if (t->shards[i].buckets == NULL) {
            fputs("wsgate: out of memory creating the client table\n", stderr);
            abort();
        }
    }
}

void wsg_clients_deinit(wsg_clients *t)
{
    for (size_t i = 0; i < WSG_CLIENT_SHARDS; i++) {
        wsg_client_shard *s = &t->shards[i];
        for (size_t b = 0; b < s->bucket_count; b++) {
            wsg_client *c = s->buckets[b];
            while (c) {
                wsg_client *next = c->next;
                free(c);
                c = next;
            }
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(t->limits.exempt);
}

bool wsg_clients_exempt(const wsg_clients *t, int family, const uint8_t *ip)
{
    for (size_t i = 0; i < t->limits.exempt_count; i++) {
        if (wsg_cidr_match(&t->limits.exempt[i], family, ip))
            return true;
    }
    return false;
}

/* Finds or makes the entry of an address. Shard lock held. */
static wsg_client *lookup(wsg_clients *t, wsg_client_shard *s, uint32_t hash, int family,
                          const uint8_t *ip, uint64_t now)
{
    size_t b = (hash / WSG_CLIENT_SHARDS) % s->bucket_count;
    size_t len = family == AF_INET ? 4 : 16;
    for (wsg_client *c = s->buckets[b]; c; c = c->next) {
        if (c->family == family && memcmp(c->ip, ip, len) == 0)
            return c;
    }
    wsg_client *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->family = (uint8_t)family;
    c->hash = hash;
    memcpy(c->ip, ip, len);
    wsg_bucket_init(&c->upgrades, t->limits.upgrade_burst, now);
    wsg_bucket_init(&c->requests, t->limits.request_burst, now);
    c->next = s->buckets[b];
    s->buckets[b] = c;
    s->count++;
    return c;
}

wsg_admit wsg_clients_admit_upgrade(wsg_clients *t, int family, const uint8_t *ip, uint64_t now,
                                    wsg_client **counted, uint32_t *retry_ms)
{
    const wsg_client_limits *l = &t->limits;
    *counted = NULL;
    if (wsg_clients_exempt(t, family, ip) || (l->upgrade_rate <= 0 && l->max_per_ip == 0))
        return WSG_ADMIT_OK;
    uint32_t hash = hash_ip(family, ip);
    wsg_client_shard *s = &t->shards[shard_of(hash)];
    wsg_admit verdict = WSG_ADMIT_OK;
    pthread_mutex_lock(&s->lock);
    wsg_client *c = lookup(t, s, hash, family, ip, now);
    if (c == NULL) {
        pthread_mutex_unlock(&s->lock);
        return WSG_ADMIT_OK; /* out of memory: no limit rather than no service */
    }
    c->seen_ms = now;
    if (l->max_per_ip && c->connections >= l->max_per_ip)
        verdict = WSG_ADMIT_FULL;
    else if (l->upgrade_rate > 0 &&
             !wsg_bucket_take(&c->upgrades, l->upgrade_rate, l->upgrade_burst, now, retry_ms))
        verdict = WSG_ADMIT_RATE;
    if (verdict == WSG_ADMIT_OK) {
        c->connections++;
        *counted = c;
    }
    pthread_mutex_unlock(&s->lock);
    return verdict;
}

void wsg_clients_release(wsg_clients *t, wsg_client *c, uint64_t now)
{
    wsg_client_shard *s = &t->shards[shard_of(c->hash)];
    pthread_mutex_lock(&s->lock);
    c->connections--;
    c->seen_ms = now;
    pthread_mutex_unlock(&s->lock);
}

wsg_admit wsg_clients_admit_request(wsg_clients *t, int family, const uint8_t *ip, uint64_t now,
                                    uint32_t *retry_ms)
{
    const wsg_client_limits *l = &t->limits;
    if (l->request_rate <= 0 || wsg_clients_exempt(t, family, ip))
        return WSG_ADMIT_OK;
    uint32_t hash = hash_ip(family, ip);
    wsg_client_shard *s = &t->shards[shard_of(hash)];
    pthread_mutex_lock(&s->lock);
    wsg_client *c = lookup(t, s, hash, family, ip, now);
    bool ok = c == NULL ||
              wsg_bucket_take(&c->requests, l->request_rate, l->request_burst, now, retry_ms);
    if (c)
        c->seen_ms = now;
    pthread_mutex_unlock(&s->lock);
    return ok ? WSG_ADMIT_OK : WSG_ADMIT_RATE;
}

size_t wsg_clients_sweep(wsg_clients *t, uint64_t now)
{
    size_t removed = 0;
    for (size_t i = 0; i < WSG_CLIENT_SHARDS; i++) {
        wsg_client_shard *s = &t->shards[i];
        pthread_mutex_lock(&s->lock);
        for (size_t b = 0; b < s->bucket_count; b++) {
            wsg_client **pp = &s->buckets[b];
            while (*pp) {
                wsg_client *c = *pp;
                if (c->connections == 0 && now - c->seen_ms > IDLE_MS) {
                    *pp = c->next;
                    free(c);
                    s->count--;
                    removed++;
                } else {
                    pp = &c->next;
                }
            }
        }
        pthread_mutex_unlock(&s->lock);
    }
    return removed;
}
