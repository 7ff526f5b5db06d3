// Built-in filters of filtered pipelines (filter.h).
//
// Design notes:
// - Words: a set of lower-cased words in an open-addressing table (FNV-1a,
//   linear probing, at most half full). A check walks the payload once,
//   cutting it into words and looking each up; no allocation.
// - Rate: chained hash table client id -> bucket {tokens, last}. Tokens are
//   kept in micro-tokens (1e6 per token) so refills are exact integers.
//   Before the table doubles, buckets that are full again (their client
//   has been idle for burst/rate seconds) are removed: such a client would
//   get a full bucket anew anyway, so forgetting it changes no verdict.

#include "filter/filter.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RTR_FILTER_MICRO 1000000ull

typedef struct rtr_filter_bucket {
	struct rtr_filter_bucket *next;
	uint64_t                  hash;
	uint64_t                  tokens; // micro-tokens
	uint64_t                  last_us;
	size_t                    len;
	char                      id[];
} rtr_filter_bucket;

struct rtr_filter {
	rtr_filter_conf     conf;
	char              **words;     // open addressing; NULL = empty slot
	size_t              wcap;      // power of two
	size_t              nwords;
	rtr_filter_bucket **buckets;
	size_t              bcap;      // power of two
	size_t              nbuckets;
	uint64_t            cap_micro; // burst in micro-tokens
};

static bool rtr_filter_wordchar(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	    c >= 0x80;
}

static uint8_t rtr_filter_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

// rtr_filter_hash hashes the bytes p[0..n), lower-cased when fold.
static uint64_t rtr_filter_hash(const uint8_t *p, size_t n, bool fold)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++) {
		h ^= fold ? rtr_filter_lower(p[i]) : p[i];
		h *= 1099511628211ull;
	}
	return h;
}

static bool rtr_filter_wfind(const rtr_filter *f, const uint8_t *p, size_t n)
{
	size_t mask = f->wcap - 1;

	if (f->nwords == 0)
		return false;
	for (size_t i = (size_t)rtr_filter_hash(p, n, true) & mask;; i = (i + 1) & mask) {
		const char *w = f->words[i];
		size_t      j;

		if (w == NULL)
			return false;
		for (j = 0; j < n && w[j] != '\0' && (uint8_t)w[j] == rtr_filter_lower(p[j]); j++)
			;
		if (j == n && w[j] == '\0')
			return true;
	}
}

static hw_err rtr_filter_wadd(rtr_filter *f, const uint8_t *p, size_t n)
{
	char  *w;
	size_t mask;

	if (rtr_filter_wfind(f, p, n))
		return HW_OK;
	if ((f->nwords + 1) * 2 > f->wcap) {
		size_t  ncap = f->wcap != 0 ? f->wcap * 2 : 64;
		char  **nv = calloc(ncap, sizeof(*nv));

		if (nv == NULL)
			return HW_ENOMEM;
		for (size_t i = 0; i < f->wcap; i++) {
			const char *o = f->words[i];
			size_t      k;

			if (o == NULL)
				continue;
			k = (size_t)rtr_filter_hash((const uint8_t *)o, strlen(o), true) & (ncap - 1);
			while (nv[k] != NULL)
				k = (k + 1) & (ncap - 1);
			nv[k] = f->words[i];
		}
		free(f->words);
		f->words = nv;
		f->wcap = ncap;
	}
	if ((w = malloc(n + 1)) == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < n; i++)
		w[i] = (char)rtr_filter_lower(p[i]);
	w[n] = '\0';
	mask = f->wcap - 1;
	for (size_t i = (size_t)rtr_filter_hash(p, n, true) & mask;; i = (i + 1) & mask)
		if (f->words[i] == NULL) {
			f->words[i] = w;
			break;
		}
	f->nwords++;
	return HW_OK;
}

// rtr_filter_load reads the words file: one word a line.
static hw_err rtr_filter_load(rtr_filter *f, const char *path, char **why)
{
	FILE  *fp = fopen(path, "r");
	char   line[1024];
	hw_err err = HW_OK;

	if (fp == NULL) {
		if (why != NULL) {
			char tmp[512];

			snprintf(tmp, sizeof(tmp), "words_file %s: %s", path, strerror(errno));
			*why = strdup(tmp);
		}
		return HW_ECONFIG;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		size_t a = 0, b = strlen(line);

		while (a < b && (line[a] == ' ' || line[a] == '\t'))
			a++;
		while (b > a && (line[b - 1] == '\n' || line[b - 1] == '\r' || line[b - 1] == ' ' ||
		    line[b - 1] == '\t'))
			b--;
		if (a == b || line[a] == '#')
			continue;
		if ((err = rtr_filter_wadd(f, (const uint8_t *)line + a, b - a)) != HW_OK)
			break;
	}
	fclose(fp);
	return err;
}

hw_err rtr_filter_alloc(rtr_filter **out, const rtr_filter_conf *c, char **why)
{
	rtr_filter *f;
	hw_err      err;

	if (out == NULL || c == NULL)
		return HW_EINVAL;
	if ((f = calloc(1, sizeof(*f))) == NULL)
		return HW_ENOMEM;
	f->conf = *c;
	f->conf.words_file = NULL;
	if (f->conf.rate_per_s > 0 && f->conf.burst == 0)
		f->conf.burst = f->conf.rate_per_s;
	f->cap_micro = (uint64_t)f->conf.burst * RTR_FILTER_MICRO;
	if (c->words_file != NULL && c->words_file[0] != '\0') {
		if ((f->conf.words_file = strdup(c->words_file)) == NULL) {
			err = HW_ENOMEM;
			goto fail;
		}
		if ((err = rtr_filter_load(f, c->words_file, why)) != HW_OK)
			goto fail;
	}
	*out = f;
	return HW_OK;
fail:
	rtr_filter_free(f);
	return err;
}

static bool rtr_filter_has_word(const rtr_filter *f, hw_bytes payload)
{
	size_t i = 0;

	while (i < payload.len) {
		size_t start;

		while (i < payload.len && !rtr_filter_wordchar(payload.ptr[i]))
			i++;
		start = i;
		while (i < payload.len && rtr_filter_wordchar(payload.ptr[i]))
			i++;
		if (i > start && rtr_filter_wfind(f, payload.ptr + start, i - start))
			return true;
	}
	return false;
}

// rtr_filter_refill brings b up to now.
static void rtr_filter_refill(const rtr_filter *f, rtr_filter_bucket *b, uint64_t now_us)
{
	uint64_t dt = now_us > b->last_us ? now_us - b->last_us : 0;
	// micro-tokens gained: dt (us) * rate (tokens/s); capped before it can
	// overflow (dt beyond the time to fill up adds nothing).
	uint64_t fill = f->cap_micro / f->conf.rate_per_s + 1;
	uint64_t gain = (dt > fill ? fill : dt) * f->conf.rate_per_s;

	b->tokens = b->tokens + gain > f->cap_micro ? f->cap_micro : b->tokens + gain;
	b->last_us = now_us;
}

// rtr_filter_sweep forgets buckets that are full again.
static void rtr_filter_sweep(rtr_filter *f, uint64_t now_us)
{
	for (size_t i = 0; i < f->bcap; i++)
		for (rtr_filter_bucket **pp = &f->buckets[i]; *pp != NULL;) {
			rtr_filter_bucket *b = *pp;

			rtr_filter_refill(f, b, now_us);
			if (b->tokens >= f->cap_micro) {
				*pp = b->next;
				free(b);
				f->nbuckets--;
			} else {
				pp = &b->next;
			}
		}
}

static hw_err rtr_filter_grow(rtr_filter *f, uint64_t now_us)
{
	size_t              ncap;
	rtr_filter_bucket **nv;

	// Double unless the sweep freed at least half: a sweep that frees
	// little must not run again at the very next new client.
	rtr_filter_sweep(f, now_us);
	if (f->nbuckets < f->bcap / 2)
		return HW_OK;
	ncap = f->bcap * 2;
	if ((nv = calloc(ncap, sizeof(*nv))) == NULL)
		return HW_ENOMEM;
	for (size_t i = 0; i < f->bcap; i++)
		while (f->buckets[i] != NULL) {
			rtr_filter_bucket *b = f->buckets[i];

			f->buckets[i] = b->next;
			b->next = nv[b->hash & (ncap - 1)];
			nv[b->hash & (ncap - 1)] = b;
		}
	free(f->buckets);
	f->buckets = nv;
	f->bcap = ncap;
	return HW_OK;
}

// rtr_filter_bucket_of finds or creates the bucket of id (NULL on ENOMEM).
static rtr_filter_bucket *rtr_filter_bucket_of(rtr_filter *f, const char *id, uint64_t now_us)
{
	size_t             n = strlen(id);
	uint64_t           h = rtr_filter_hash((const uint8_t *)id, n, false);
	rtr_filter_bucket *b;

	if (f->buckets == NULL) {
		if ((f->buckets = calloc(64, sizeof(*f->buckets))) == NULL)
			return NULL;
		f->bcap = 64;
	}
	for (b = f->buckets[h & (f->bcap - 1)]; b != NULL; b = b->next)
		if (b->hash == h && b->len == n && memcmp(b->id, id, n) == 0)
			return b;
	if (f->nbuckets >= f->bcap && rtr_filter_grow(f, now_us) != HW_OK)
		return NULL;
	if ((b = malloc(sizeof(*b) + n + 1)) == NULL)
		return NULL;
	b->hash = h;
	b->len = n;
	memcpy(b->id, id, n + 1);
	b->tokens = f->cap_micro;
	b->last_us = now_us;
	b->next = f->buckets[h & (f->bcap - 1)];
	f->buckets[h & (f->bcap - 1)] = b;
	f->nbuckets++;
	return b;
}

rtr_filter_verdict rtr_filter_check(rtr_filter *f, const char *client_id, hw_bytes payload,
    uint64_t now_us)
{
	rtr_filter_bucket *b;

	if (f->conf.max_bytes > 0 && payload.len > f->conf.max_bytes)
		return RTR_FILTER_SIZE;
	if (f->nwords > 0 && rtr_filter_has_word(f, payload))
		return RTR_FILTER_WORDS;
	if (f->conf.rate_per_s == 0)
		return RTR_FILTER_PASS;
	// Out of memory for a new bucket: let the record through rather than
	// punish a client for the router's trouble.
	if ((b = rtr_filter_bucket_of(f, client_id != NULL ? client_id : "", now_us)) == NULL)
		return RTR_FILTER_PASS;
	rtr_filter_refill(f, b, now_us);
	if (b->tokens < RTR_FILTER_MICRO)
		return RTR_FILTER_RATE;
	b->tokens -= RTR_FILTER_MICRO;
	return RTR_FILTER_PASS;
}

size_t rtr_filter_words(const rtr_filter *f)
{
	return f != NULL ? f->nwords : 0;
}

size_t rtr_filter_clients(const rtr_filter *f)
{
	return f != NULL ? f->nbuckets : 0;
}

const char *rtr_filter_reason_name(rtr_filter_verdict v)
{
	switch (v) {
	case RTR_FILTER_PASS: return "pass";
	case RTR_FILTER_SIZE: return "size";
	case RTR_FILTER_WORDS: return "words";
	case RTR_FILTER_RATE: return "rate";
	}
	return "unknown";
}

void rtr_filter_conf_fini(rtr_filter_conf *c)
{
	if (c == NULL)
		return;
	free(c->words_file);
	c->words_file = NULL;
}

void rtr_filter_free(rtr_filter *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->wcap; i++)
		free(f->words[i]);
	free(f->words);
	for (size_t i = 0; i < f->bcap; i++)
		while (f->buckets[i] != NULL) {
			rtr_filter_bucket *b = f->buckets[i];

			f->buckets[i] = b->next;
			free(b);
		}
	free(f->buckets);
	free(f->conf.words_file);
	free(f);
}
