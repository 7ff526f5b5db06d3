#ifndef BRK_AUTH_H
#define BRK_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/config.h"
#include "core/err.h"
#include "core/metrics.h"

// Authentication of CONNECT and authorization of SUBSCRIBE / PUBLISH for the
// broker (docs/auth.md has the configuration and the semantics).
//
// Threading. Every function here may be called from any thread, at the
// same time, except brk_auth_free. The module owns one thread: the HTTP
// thread (libcurl multi), on which slow work completes. A completion
// callback (brk_auth_connect_fn, brk_acl_fn) runs EITHER inline, before the
// call that started it returns (JWT, password file, anonymous, cache hits),
// OR on the HTTP thread, possibly while the starting call is still
// returning. A callback must not block and must not call brk_auth_free: the
// broker posts the result to the session's worker and returns. Every started operation
// calls its callback exactly once, also at brk_auth_free (then with a deny).
//
// Reload. The rules, keys, password file and callback settings form an
// immutable, refcounted snapshot. brk_auth_reload builds a new snapshot and
// swaps it in atomically: checks already running finish on the old one, the
// next checks see the new one. On any error the old snapshot stays and the
// error names the bad key or rule. Caches of callback answers are cleared
// by a successful reload.

typedef struct brk_auth brk_auth;

// The authenticated client: user, client id, attributes, per-client rules
// (from the JWT claim or the callback answer). Immutable and refcounted;
// any thread.
typedef struct brk_identity brk_identity;

// brk_auth_alloc builds the module from cfg->auth (and
// broker.allow_anonymous) and starts its HTTP thread. cfg is only read
// during the call. `metrics` (not owned, may be NULL) receives
// hawser_broker_auth_total{result}, hawser_broker_acl_checks_total{result},
// hawser_broker_auth_callback_seconds, hawser_broker_auth_cache_hits_total.
// On error *why (heap, caller frees; may be NULL) names the key or the rule,
// e.g. "auth.rules: rule 2 {\"topic\":\"a/#/b\"}: '#' must be the last level".
hw_err brk_auth_alloc(brk_auth **out, const hw_config *cfg, hw_metrics *metrics, char **why);

// brk_auth_reload validates cfg->auth and swaps it in (see Reload above).
// Returns HW_ECONFIG with *why on a bad config; the old rules stay.
// Safe while checks run on other threads (call it from the SIGHUP thread).
hw_err brk_auth_reload(brk_auth *a, const hw_config *cfg, char **why);

// brk_auth_validate checks cfg->auth without building anything that runs
// (for --check-config). Same errors as brk_auth_alloc.
hw_err brk_auth_validate(const hw_config *cfg, char **why);

// brk_auth_free stops the HTTP thread, completes every pending operation
// with a deny (HW_ECLOSED), and frees the module. Call once, after no
// other thread can call into the module. Identities may outlive it.
void brk_auth_free(brk_auth *a);

// ---------------------------------------------------------------------------
// CONNECT

typedef struct brk_auth_connect_req {
	uint8_t     version;     // protocol level: 3 (3.1), 4 (3.1.1) or 5
	const char *client_id;   // the final client id (assigned when empty)
	hw_bytes    username;    // ptr NULL when the flag was not set
	hw_bytes    password;    // ptr NULL when the flag was not set
	hw_bytes    auth_method; // MQTT 5 Authentication Method; ptr NULL if none
	const char *peer;        // "ip:port" (ConnInfo.peer); may be NULL
	const char *listener;    // "mqtt", "ws"... (ConnInfo.listener); may be NULL
} brk_auth_connect_req;

typedef struct brk_auth_connect_result {
	bool          allowed;
	uint8_t       code;      // CONNACK code for req->version: 0 when allowed;
	                         // 3.1.1 0x04 bad user name or password, 0x05 not
	                         // authorized; 5.0 0x86, 0x87, 0x8C bad auth method
	hw_err        status;    // HW_OK, or why it failed: HW_EDENIED,
	                         // HW_ETIMEDOUT/HW_EIO (service down), HW_ECLOSED
	brk_identity *identity;  // when allowed: a reference the callee now owns
	                         // (brk_identity_unref it); NULL otherwise
	const char   *method;    // static: "jwt", "http", "file", "anonymous",
	                         // "open" (empty chain), or "" when denied
	const char   *reason;    // static text for the log line
} brk_auth_connect_result;

// brk_auth_connect_fn receives the outcome; see Threading for where it runs.
// `res` is valid only during the call (take res->identity, it is yours).
typedef void (*brk_auth_connect_fn)(void *arg, brk_auth_connect_result *res);

// brk_auth_connect runs the chain (auth.chain) on one CONNECT. Everything in
// req is copied; req may be freed when this returns. Returns HW_OK when fn
// will be (or already was) called exactly once; an error (HW_ENOMEM) means fn
// will not be called. Counts hawser_broker_auth_total{result}.
hw_err brk_auth_connect(brk_auth *a, const brk_auth_connect_req *req,
    brk_auth_connect_fn fn, void *arg);

// ---------------------------------------------------------------------------
// SUBSCRIBE / PUBLISH

typedef enum brk_acl_action {
	BRK_ACL_SUBSCRIBE = 1,
	BRK_ACL_PUBLISH = 2,
} brk_acl_action;

typedef enum brk_acl_verdict {
	BRK_ACL_DENY = 0,
	BRK_ACL_ALLOW = 1,
	BRK_ACL_PENDING = 2,    // a delegated rule asked its callback; fn will run
} brk_acl_verdict;

typedef struct brk_acl_result {
	brk_acl_verdict verdict;
	uint8_t         qos;    // ALLOW: the QoS to grant (subscribe: the request
	                        // capped by the rule's max_qos; publish: as asked)
} brk_acl_result;

// brk_acl_fn receives the verdict (ALLOW or DENY) of a PENDING check.
typedef void (*brk_acl_fn)(void *arg, brk_acl_result res);

// brk_auth_check decides whether `id` may subscribe to filter or publish to
// topic (action). For SUBSCRIBE, `topic` is the filter as sent; an MQTT 5
// "$share/<group>/<filter>" is checked as its inner filter. The filter is
// allowed only if every topic it can match is allowed. A PUBLISH topic with
// '+' or '#', any topic with NUL or invalid UTF-8, or an empty one is
// denied. qos: requested QoS (subscribe) or the message QoS (publish);
// retain: PUBLISH with RETAIN. id may be NULL (anonymous, no %u).
//
// Returns ALLOW or DENY at once (fn is not called), or PENDING when a
// delegated rule needs its callback: fn is then called exactly once on the
// HTTP thread - possibly before brk_auth_check has returned, so post the
// result to the session's worker rather than touching session state in fn.
// With fn NULL a check that would be PENDING is DENY. The topic is copied;
// id may be released as soon as this returns.
// Counts hawser_broker_acl_checks_total{result}. Any thread.
brk_acl_result brk_auth_check(brk_auth *a, const brk_identity *id, brk_acl_action action,
    hw_bytes topic, uint8_t qos, bool retain, brk_acl_fn fn, void *arg);

// brk_auth_denied_code returns the code to answer a DENY with: SUBSCRIBE
// 0x80 (3.1.1 SUBACK failure) or 0x87 (5.0 SUBACK Not authorized); PUBLISH
// 0x87 for 5.0 (PUBACK / PUBREC), and 0x00 for 3.1.1, whose acks carry no
// reason: acknowledge as usual and drop the message. Pure; any thread.
uint8_t brk_auth_denied_code(uint8_t version, brk_acl_action action);

// ---------------------------------------------------------------------------
// Identities

// brk_identity_alloc builds an identity by hand (tests, the empty chain).
// user may be NULL. attrs is NULL or a NULL-terminated list of name, value
// pairs. rules_json: NULL or a JSON array of per-client rules.
hw_err brk_identity_alloc(brk_identity **out, const char *user, const char *client_id,
    const char *const *attrs, const char *rules_json, char **why);

// brk_identity_ref adds a reference and returns id; brk_identity_unref drops
// one and frees at zero (NULL ok). Any thread.
brk_identity *brk_identity_ref(brk_identity *id);
void brk_identity_unref(brk_identity *id);

// brk_identity_user returns the user (%u), or NULL for an anonymous client.
const char *brk_identity_user(const brk_identity *id);

// brk_identity_attr returns attribute `name` (%{name}) or NULL.
const char *brk_identity_attr(const brk_identity *id, const char *name);

// ---------------------------------------------------------------------------
// Password file

// brk_auth_passwd_entry formats one password file line (without newline)
// for user and password with a random salt and `iterations` rounds of
// PBKDF2-HMAC-SHA256 (0 = the default, BRK_AUTH_PBKDF2_ITERATIONS):
//   user:$pbkdf2-sha256$<iterations>$<salt base64>$<hash base64>
// *out is a heap string the caller frees.
#define BRK_AUTH_PBKDF2_ITERATIONS 10000
hw_err brk_auth_passwd_entry(const char *user, const char *password, uint32_t iterations,
    char **out);

#endif
