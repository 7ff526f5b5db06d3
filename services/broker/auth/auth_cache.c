// TTL cache of callback answers (auth_impl.h).
//
// Design notes: 16 stripes, each a mutex and a small chained hash table.
// Keys are SHA-256 digests, so the first bytes are already a good hash and
// no credential is kept in memory. A stripe holds at most max/16 entries;
// inserting into a full stripe drops its expired entries, and if none
// expired, all of it (a cache, not a store: the next lookups miss).

#include <openssl/evp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "auth_impl.h"
#include "core/clock.h"

#define CACHE_STRIPES 16
#define CACHE_BUCKETS 256 // per stripe

typedef struct cache_ent cache_ent;
struct cache_ent {
	cache_ent *next;
	uint8_t    key[BRK_CACHE_KEY];
	uint64_t   expires_ms;
	size_t     len;
	uint8_t    val[];
};

typedef struct cache_stripe {
	pthread_mutex_t mu;
	cache_ent      *b[CACHE_BUCKETS];
	size_t          n;
} cache_stripe;

struct brk_cache {
	EVP_MD      *sha256;       // fetched once: an implicit fetch per digest is slow
	size_t       max_per_stripe;
	cache_stripe s[CACHE_STRIPES];
};

hw_err brk_cache_alloc(brk_cache **out, size_t max_entries)
{
	brk_cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return HW_ENOMEM;
	if ((c->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL)) == NULL) {
		free(c);
		return HW_EINTERNAL;
	}
	c->max_per_stripe = max_entries / CACHE_STRIPES + 1;
	for (size_t i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_init(&c->s[i].mu, NULL);
	*out = c;
	return HW_OK;
}

static void cache_stripe_clear(cache_stripe *s, uint64_t now_ms, bool all)
{
	for (size_t i = 0; i < CACHE_BUCKETS; i++) {
		cache_ent **pp = &s->b[i];
		while (*pp != NULL) {
			cache_ent *e = *pp;
			if (all || e->expires_ms <= now_ms) {
				*pp = e->next;
				free(e);
				s->n--;
			} else {
				pp = &e->next;
			}
		}
	}
}

void brk_cache_free(brk_cache *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < CACHE_STRIPES; i++) {
		cache_stripe_clear(&c->s[i], 0, true);
		pthread_mutex_destroy(&c->s[i].mu);
	}
	EVP_MD_free(c->sha256);
	free(c);
}

void brk_cache_key(brk_cache *c, uint8_t key[BRK_CACHE_KEY], const char *const *parts, size_t n)
{
	EVP_MD_CTX  *ctx = EVP_MD_CTX_new();
	unsigned int len = 0;

	memset(key, 0, BRK_CACHE_KEY);
	if (ctx == NULL || EVP_DigestInit_ex(ctx, c->sha256, NULL) != 1)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const char *p = parts[i] != NULL ? parts[i] : "";
		// Each part with its terminating NUL, so ("ab","c") != ("a","bc").
		EVP_DigestUpdate(ctx, p, strlen(p) + 1);
	}
	EVP_DigestFinal_ex(ctx, key, &len);
out:
	EVP_MD_CTX_free(ctx);
}

static cache_stripe *cache_stripe_of(brk_cache *c, const uint8_t *key, size_t *bucket)
{
	*bucket = ((size_t)key[1] << 8 | key[2]) % CACHE_BUCKETS;
	return &c->s[key[0] % CACHE_STRIPES];
}

bool brk_cache_get(brk_cache *c, const uint8_t key[BRK_CACHE_KEY], uint64_t now_ms, hw_buf *val)
{
	size_t        bk;
	cache_stripe *s = cache_stripe_of(c, key, &bk);
	bool          hit = false;

	pthread_mutex_lock(&s->mu);
	for (cache_ent *e = s->b[bk]; e != NULL; e = e->next) {
		if (memcmp(e->key, key, BRK_CACHE_KEY) != 0)
			continue;
		if (e->expires_ms > now_ms && (val == NULL || hw_buf_append(val, e->val, e->len) == HW_OK))
			hit = true;
		break;
	}
	pthread_mutex_unlock(&s->mu);
	return hit;
}

void brk_cache_put(brk_cache *c, const uint8_t key[BRK_CACHE_KEY], const void *val, size_t len,
    uint64_t expires_ms)
{
	size_t        bk;
	cache_stripe *s = cache_stripe_of(c, key, &bk);
	cache_ent    *n = malloc(sizeof(*n) + len);

	if (n == NULL)
		return; // a cache: failing to remember is harmless
	memcpy(n->key, key, BRK_CACHE_KEY);
	n->expires_ms = expires_ms;
	n->len = len;
	if (len > 0)
		memcpy(n->val, val, len);
	pthread_mutex_lock(&s->mu);
	for (cache_ent **pp = &s->b[bk]; *pp != NULL; pp = &(*pp)->next) {
		if (memcmp((*pp)->key, key, BRK_CACHE_KEY) == 0) {
			cache_ent *old = *pp;
			n->next = old->next;
			*pp = n;
			free(old);
			pthread_mutex_unlock(&s->mu);
			return;
		}
	}
	if (s->n >= c->max_per_stripe) {
		cache_stripe_clear(s, hw_clock_mono_ms(), false);
		if (s->n >= c->max_per_stripe)
			cache_stripe_clear(s, 0, true);
	}
	n->next = s->b[bk];
	s->b[bk] = n;
	s->n++;
	pthread_mutex_unlock(&s->mu);
}

void brk_cache_clear(brk_cache *c)
{
	for (size_t i = 0; i < CACHE_STRIPES; i++) {
		pthread_mutex_lock(&c->s[i].mu);
		cache_stripe_clear(&c->s[i], 0, true);
		pthread_mutex_unlock(&c->s[i].mu);
	}
}
