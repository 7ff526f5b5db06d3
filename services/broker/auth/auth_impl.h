#ifndef BRK_AUTH_IMPL_H
#define BRK_AUTH_IMPL_H

// Internals of the auth module shared by its files. Not a contract: auth.h
// is. Lock order: brk_auth.lock (snapshot pointer) is never held while
// calling into the cache or the HTTP thread.

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "auth_acl.h"
#include "auth_json.h"
#include "core/metrics.h"

// ---------------------------------------------------------------------------
// auth_cache.c: TTL cache of callback answers, keyed by a SHA-256 of the
// request (credentials are never stored in the clear). Striped mutexes;
// bounded: a full stripe first drops expired entries, then everything.

#define BRK_CACHE_KEY 32

typedef struct brk_cache brk_cache;

hw_err brk_cache_alloc(brk_cache **out, size_t max_entries);
void brk_cache_free(brk_cache *c);
// brk_cache_key hashes the n NUL-terminated parts (NULL parts hash as "").
void brk_cache_key(brk_cache *c, uint8_t key[BRK_CACHE_KEY], const char *const *parts, size_t n);
// brk_cache_get copies the value under key into *val (when val is not NULL;
// appended) if present and not expired at now_ms.
bool brk_cache_get(brk_cache *c, const uint8_t key[BRK_CACHE_KEY], uint64_t now_ms, hw_buf *val);
void brk_cache_put(brk_cache *c, const uint8_t key[BRK_CACHE_KEY], const void *val, size_t len,
    uint64_t expires_ms);
void brk_cache_clear(brk_cache *c);

// ---------------------------------------------------------------------------
// auth_http.c: POSTs of JSON on one libcurl multi thread.

typedef struct brk_http brk_http;

// brk_http_done_fn: err HW_OK with the HTTP status and body (any status),
// or HW_ETIMEDOUT / HW_EIO (after the retries) or HW_ECLOSED (shutdown).
// Runs on the HTTP thread.
typedef void (*brk_http_done_fn)(void *arg, hw_err err, long status, const char *body,
    size_t len);

hw_err brk_http_alloc(brk_http **out, hw_histogram *seconds);
// brk_http_post queues a POST; takes `body` (malloc'd) on success. Retries
// transport errors and 5xx answers `retries` times. Any thread.
hw_err brk_http_post(brk_http *h, const char *url, char *body, size_t len,
    uint32_t timeout_ms, uint32_t retries, brk_http_done_fn fn, void *arg);
// brk_http_free stops the thread, completes everything with HW_ECLOSED.
void brk_http_free(brk_http *h);

// ---------------------------------------------------------------------------
// auth_jwt.c

typedef struct brk_jwt_cfg {
	int            alg;          // jwt_alg_t
	char          *alg_name;     // "HS256"...
	unsigned char *key;
	size_t         key_len;
	uint32_t       leeway_s;
	bool           in_username;
	char          *user_claim;
	char          *acl_claim;    // NULL = none
	char         **attr_claims;  // NULL-terminated; may be NULL
} brk_jwt_cfg;

typedef struct brk_jwt_out {
	char       *user;
	char      **attrs;      // name, value, ..., NULL (heap)
	char       *acl_json;   // NULL when no acl claim
	const char *reason;     // static, on failure
} brk_jwt_out;

hw_err brk_jwt_cfg_init(brk_jwt_cfg *c, const hw_config *cfg, char **why);
void brk_jwt_cfg_fini(brk_jwt_cfg *c);
// brk_jwt_verify: HW_OK (out filled; free with brk_jwt_out_fini),
// HW_ENOTFOUND (not shaped like a JWT: the chain goes on), HW_EDENIED
// (a JWT that fails: out->reason says why).
hw_err brk_jwt_verify(const brk_jwt_cfg *c, const char *token, size_t len, int64_t now_s,
    brk_jwt_out *out);
void brk_jwt_out_fini(brk_jwt_out *o);

// ---------------------------------------------------------------------------
// auth_pwfile.c

typedef struct brk_pwfile brk_pwfile;

hw_err brk_pwfile_load(const char *path, brk_pwfile **out, char **why);
void brk_pwfile_free(brk_pwfile *f);
// brk_pwfile_check: 1 password right, 0 wrong, -1 unknown user.
int brk_pwfile_check(const brk_pwfile *f, hw_bytes user, hw_bytes password);

// ---------------------------------------------------------------------------
// auth.c

enum { BRK_M_JWT = 1, BRK_M_HTTP, BRK_M_FILE, BRK_M_ANON };
enum { BRK_ON_ERROR_DENY = 0, BRK_ON_ERROR_ALLOW, BRK_ON_ERROR_IGNORE };

typedef struct brk_auth_cb {
	char    *name;
	char    *url;
	uint32_t timeout_ms;
	uint32_t retries;
	uint32_t cache_ttl_ms;
	int      on_error;
} brk_auth_cb;

// A chain of methods for one listener (auth.listener_chains).
typedef struct brk_auth_chain {
	char  *listener;
	int    m[8];
	size_t n;
} brk_auth_chain;

typedef struct brk_auth_snap {
	atomic_int      refs;
	int             chain[8];      // auth.chain
	size_t          nchain;
	brk_auth_chain *lchains;       // auth.listener_chains
	size_t          nlchains;
	bool            inited[8];     // per BRK_M_*: settings loaded
	bool          open_allow;    // empty chain: accept everyone?
	bool          default_allow;
	brk_jwt_cfg   jwt;
	bool          has_jwt;
	brk_pwfile   *pw;
	brk_auth_cb   http;          // the CONNECT callback (url NULL = none)
	brk_auth_cb  *cbs;           // delegated ACL callbacks
	size_t        ncb;
	brk_acl_rules rules;
} brk_auth_snap;

struct brk_identity {
	atomic_int    refs;
	char         *user;
	char         *client_id;
	char        **attr_names;
	char        **attr_values;
	size_t        n_attrs;
	brk_acl_rules rules;
};

struct brk_auth {
	pthread_rwlock_t lock;        // guards snap (the pointer only)
	brk_auth_snap   *snap;
	brk_http        *http;
	brk_cache       *cache;
	hw_counter      *auth_allow, *auth_deny, *auth_error;
	hw_counter      *acl_allow, *acl_deny;
	hw_counter      *cache_hits;
};

#endif
