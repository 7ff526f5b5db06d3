// Configuration table, YAML/env/flag loading and the shared command line
// (core/config.h).
//
// Design notes:
// - Every key is one row of cfg_table (Redis standardConfig style): dotted
//   key, type, field offset in hw_config, default as text, bounds or allowed
//   values, a format check, and a one-line description. Everything else
//   (defaults, YAML, environment, --set, validation, dump, --help, the
//   Markdown reference) walks the table, so adding a key is adding a row.
// - Defaults are text parsed by the same code as every other source, so a
//   default can never be a value the parser would refuse.
// - The environment variable of a key is derived: "HAWSER_" + the key in
//   upper case with '.' -> '_'. HAWSER_CONFIG is the one allowed HAWSER_*
//   variable that is not a key.
// - Errors are heap strings "<key>: <problem> (<source>)", where source is
//   "file:line", the environment variable, "--set" or the binary's defaults.

#include "core/config.h"
#include "core/log.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "core/buf.h"
#include "core/version.h"

typedef enum cfg_type {
	CFG_STRING,
	CFG_LIST,
	CFG_U32,
	CFG_BOOL,
	CFG_ENUM,
	CFG_JSON, // structured: YAML subtree kept as JSON text (env/--set: JSON text)
} cfg_type;

static const char *const cfg_type_names[] = {
	[CFG_STRING] = "string",
	[CFG_LIST] = "list",
	[CFG_U32] = "u32",
	[CFG_BOOL] = "bool",
	[CFG_ENUM] = "enum",
	[CFG_JSON] = "json",
};

// Format checks applied to string values and to every element of lists.
typedef enum cfg_check {
	CFG_CHECK_NONE = 0,
	CFG_CHECK_HOSTPORT, // "host:port" listener (libwebsockets, NNG HTTP)
	CFG_CHECK_NNG_URL,  // tcp://host:port, ipc://path, inproc://name
	CFG_CHECK_MEMBER,   // an NNG URL, or dns://name:port (every address of name)
} cfg_check;

typedef struct cfg_entry {
	const char        *key;
	cfg_type           type;
	size_t             off;
	const char        *def;     // default as text; NULL = computed (node.id)
	uint32_t           min;     // u32 bounds
	uint32_t           max;
	const char *const *allowed; // enum values, NULL-terminated
	cfg_check          check;
	bool               nonempty; // "" / empty list refused by validate
	const char        *doc;
} cfg_entry;

#define CFG_FIELD(f) offsetof(hw_config, f)
#define CFG_STR(k, f, def, chk, ne, doc) \
	{ k, CFG_STRING, CFG_FIELD(f), def, 0, 0, NULL, chk, ne, doc }
#define CFG_LIST(k, f, def, chk, ne, doc) \
	{ k, CFG_LIST, CFG_FIELD(f), def, 0, 0, NULL, chk, ne, doc }
#define CFG_U32(k, f, def, lo, hi, doc) \
	{ k, CFG_U32, CFG_FIELD(f), def, lo, hi, NULL, CFG_CHECK_NONE, false, doc }
#define CFG_BOOL(k, f, def, doc) \
	{ k, CFG_BOOL, CFG_FIELD(f), def, 0, 0, NULL, CFG_CHECK_NONE, false, doc }
#define CFG_ENUM(k, f, def, allowed, doc) \
	{ k, CFG_ENUM, CFG_FIELD(f), def, 0, 0, allowed, CFG_CHECK_NONE, true, doc }
#define CFG_JSON(k, f, doc) \
	{ k, CFG_JSON, CFG_FIELD(f), "", 0, 0, NULL, CFG_CHECK_NONE, false, doc }

static const char *const cfg_log_levels[] = { "debug", "info", "warn", "error", "off", NULL };
static const char *const cfg_router_modes[] = { "direct", "kafka", NULL };
static const char *const cfg_store_backends[] = { "memory", "redis", NULL };
static const char *const cfg_auth_defaults[] = { "allow", "deny", NULL };
static const char *const cfg_auth_algs[] = { "HS256", "RS256", "ES256", NULL };
static const char *const cfg_auth_fields[] = { "password", "username", NULL };
static const char *const cfg_auth_on_error[] = { "deny", "allow", "ignore", NULL };

#define HP CFG_CHECK_HOSTPORT
#define NU CFG_CHECK_NNG_URL
#define MB CFG_CHECK_MEMBER
#define NO CFG_CHECK_NONE

// The table. Rows of one section stay together only for readability: dump
// and help group by section whatever the order.
static const cfg_entry cfg_table[] = {
	CFG_STR("node.id", node.id, NULL, NO, true,
	    "Name of this process in logs, metrics and link batches; default <hostname>-<pid>."),
	CFG_ENUM("log.level", log.level, "info", cfg_log_levels,
	    "Minimum level of log lines written to stderr."),

	CFG_STR("edge.mqtt_listen", edge.mqtt_listen, "0.0.0.0:1883", HP, false,
	    "MQTT over TCP listener, host:port; empty disables."),
	CFG_STR("edge.mqtts_listen", edge.mqtts_listen, "", HP, false,
	    "MQTT over TLS listener, host:port; empty disables; needs edge.tls_cert and edge.tls_key."),
	CFG_STR("edge.ws_listen", edge.ws_listen, "0.0.0.0:8083", HP, false,
	    "MQTT over WebSocket (path /mqtt) listener, host:port; empty disables."),
	CFG_STR("edge.wss_listen", edge.wss_listen, "", HP, false,
	    "MQTT over secure WebSocket listener, host:port; empty disables; needs edge.tls_cert and edge.tls_key."),
	CFG_STR("edge.http_listen", edge.http_listen, "0.0.0.0:9100", HP, false,
	    "HTTP listener for /metrics, /healthz, /readyz, host:port; empty disables."),
	CFG_STR("edge.tls_cert", edge.tls_cert, "", NO, false,
	    "PEM certificate (chain) file for the TLS listeners."),
	CFG_STR("edge.tls_key", edge.tls_key, "", NO, false,
	    "PEM private key file for the TLS listeners."),
	CFG_STR("edge.tls_ca", edge.tls_ca, "", NO, false,
	    "PEM CA file; client certificates are not required."),
	CFG_STR("edge.listen", edge.listen, "tcp://0.0.0.0:7300", NU, true,
	    "NNG inbox URL of the edge (brokers send connection writes here)."),
	CFG_STR("edge.advertise", edge.advertise, "", NU, false,
	    "Inbox URL brokers dial back; empty derives it from edge.listen (0.0.0.0 -> host name)."),
	CFG_LIST("edge.brokers", edge.brokers, "tcp://127.0.0.1:7100", MB, true,
	    "Broker inbox URLs (tcp://host:port, or dns://name:port for every address behind a name, e.g. a headless Service); session slots are spread over the live ones by rendezvous hashing. See docs/cluster.md."),
	CFG_U32("edge.max_packet_size", edge.max_packet_size, "1048576", 1, 268435455,
	    "Largest MQTT packet accepted from a client, in bytes."),
	CFG_U32("edge.max_connections", edge.max_connections, "1000000", 1, 100000000,
	    "Client connections accepted at once; more are refused. The edge also lowers its soft "
	    "open-files limit to this + 4096 (libwebsockets scans a table of that size per close)."),
	CFG_U32("edge.write_queue_bytes", edge.write_queue_bytes, "1048576", 1024, 1073741824,
	    "Per-connection write queue hard limit in bytes; past it a slow consumer is disconnected."),
	CFG_U32("edge.ws_rx_buffer", edge.ws_rx_buffer, "512", 128, 65536,
	    "Bytes libwebsockets keeps per WebSocket connection for incoming frames, for the "
	    "connection's whole life. Larger frames arrive in pieces: 128 saves 384 bytes per "
	    "connection against 512, but 1 KB messages then cost about 20 % more CPU."),
	CFG_U32("edge.connect_timeout_ms", edge.connect_timeout_ms, "10000", 100, 3600000,
	    "Milliseconds a new connection has to send CONNECT."),
	CFG_U32("edge.drain_rate", edge.drain_rate, "500", 1, 10000000,
	    "Connections closed per second while draining on SIGTERM."),
	CFG_U32("edge.drain_timeout_ms", edge.drain_timeout_ms, "30000", 0, 86400000,
	    "Milliseconds after SIGTERM before the edge exits whatever remains."),
	CFG_STR("edge.server_reference", edge.server_reference, "", NO, false,
	    "MQTT 5 Server Reference sent with DISCONNECT 0x9C when draining; empty sends 0x8B."),
	CFG_BOOL("edge.demo_page", edge.demo_page, "false",
	    "Serve the demo page at / on the HTTP listener."),

	CFG_STR("broker.listen", broker.listen, "tcp://0.0.0.0:7100", NU, true,
	    "NNG inbox URL of the broker."),
	CFG_STR("broker.advertise", broker.advertise, "", NU, false,
	    "Inbox URL peers dial back; empty derives it from broker.listen."),
	CFG_LIST("broker.routers", broker.routers, "tcp://127.0.0.1:7200", NU, true,
	    "Router inbox URLs."),
	CFG_LIST("broker.peers", broker.peers, "", MB, false,
	    "The broker tier as edges and routers see it (the same list as edge.brokers), so this broker knows which session slots it owns; must name this broker's advertised inbox URL (or a dns:// entry resolving to it); empty = this broker alone owns every slot. See docs/cluster.md."),
	CFG_STR("broker.http_listen", broker.http_listen, "0.0.0.0:9101", HP, false,
	    "HTTP listener for /metrics, /healthz, /readyz, host:port; empty disables."),
	CFG_U32("broker.workers", broker.workers, "0", 0, 1024,
	    "Worker threads; 0 = one per CPU the process may run on (its affinity mask)."),
	CFG_U32("broker.receive_maximum", broker.receive_maximum, "32", 1, 65535,
	    "In-flight QoS 1/2 window for clients that announce no Receive Maximum, and the Receive Maximum announced to MQTT 5 clients (their inbound window)."),
	CFG_U32("broker.max_inflight", broker.max_inflight, "65535", 1, 65535,
	    "Cap on any client's Receive Maximum, and the inbound QoS 1/2 window of MQTT 3.1/3.1.1 clients (which cannot be told one)."),
	CFG_U32("broker.max_queued_messages", broker.max_queued_messages, "1000", 0, 100000000,
	    "Messages queued per session while offline or while the window is full."),
	CFG_U32("broker.max_queued_bytes", broker.max_queued_bytes, "16777216", 0, 4294967295u,
	    "Bytes queued per session while offline or while the window is full."),
	CFG_U32("broker.topic_alias_maximum", broker.topic_alias_maximum, "64", 0, 65535,
	    "Topic aliases accepted from an MQTT 5 client."),
	CFG_U32("broker.max_session_expiry", broker.max_session_expiry, "604800", 0, 4294967295u,
	    "Longest session expiry interval granted, in seconds."),
	CFG_U32("broker.max_keepalive", broker.max_keepalive, "0", 0, 65535,
	    "Longest keepalive granted, in seconds; 0 = the client's choice."),
	CFG_BOOL("broker.retain_available", broker.retain_available, "true",
	    "Whether retained messages are supported."),
	CFG_BOOL("broker.allow_anonymous", broker.allow_anonymous, "true",
	    "Whether clients without credentials may connect."),

	CFG_LIST("router.brokers", router.brokers, "tcp://127.0.0.1:7100", MB, true,
	    "Broker inbox URLs the router offers messages to (same forms and same list as edge.brokers)."),
	CFG_STR("router.listen", router.listen, "tcp://0.0.0.0:7200", NU, true,
	    "NNG inbox URL of the router."),
	CFG_STR("router.advertise", router.advertise, "", NU, false,
	    "Inbox URL peers dial back; empty derives it from router.listen."),
	CFG_STR("router.http_listen", router.http_listen, "0.0.0.0:9102", HP, false,
	    "HTTP listener for /metrics, /healthz, /readyz, host:port; empty disables."),
	CFG_ENUM("router.mode", router.mode, "direct", cfg_router_modes,
	    "Routing mode: direct (no Kafka; publishes go straight back to subscribers) or kafka (router.pipelines, then direct for unmatched topics); see services/router/README.md."),
	CFG_JSON("router.pipelines", router.pipelines,
	    "Kafka pipelines, in match order (YAML sequence of {name, filter, mode, topic, key}); needs router.mode kafka; see services/router/README.md."),
	CFG_BOOL("router.direct", router.direct, "true",
	    "Whether publishes no pipeline matches go direct to subscribers; false refuses them (reason 0x90)."),
	CFG_STR("router.publish_token", router.publish_token, "", NO, false,
	    "Bearer token of the router's HTTP publish API (POST /v1/publish on router.http_listen); empty disables the API (404)."),
	CFG_U32("router.publish_max_bytes", router.publish_max_bytes, "1048576", 1, 268435455,
	    "Largest HTTP publish request body in bytes; larger ones are answered 413."),
	CFG_U32("router.publish_timeout_ms", router.publish_timeout_ms, "10000", 100, 600000,
	    "How long an HTTP publish waits for every broker to take the message before it is answered 503."),
	CFG_STR("router.kafka.brokers", router.kafka.brokers, "", NO, false,
	    "Kafka bootstrap servers, host:port[,host:port...]; required when router.mode is kafka."),
	CFG_STR("router.kafka.group", router.kafka.group, "hawser-router", NO, true,
	    "Kafka consumer group of the routers (consume_only and publish_consume pipelines)."),
	CFG_U32("router.kafka.message_timeout_ms", router.kafka.message_timeout_ms, "30000", 1000, 900000,
	    "How long a produce may wait for Kafka before the client publish fails (0x80)."),
	CFG_JSON("router.kafka.properties", router.kafka.properties,
	    "Extra librdkafka properties for producer and consumer (mapping name -> value), e.g. security settings."),
	CFG_STR("router.kafka.events_topic", router.kafka.events_topic, "", NO, false,
	    "Kafka topic of client lifecycle events (hawser.v1.ClientEvent, keyed by client id); empty disables them. Brokers read it too: set it for every tier."),
	CFG_U32("router.kafka.lag_interval_ms", router.kafka.lag_interval_ms, "5000", 100, 3600000,
	    "How often the router refreshes hawser_router_consumer_lag from Kafka's high watermarks."),

	CFG_LIST("auth.chain", auth.chain, "", NO, false,
	    "Authentication methods tried in order on CONNECT: jwt, http, file, anonymous; empty verifies nothing (a user name is taken as is; without one, broker.allow_anonymous decides)."),
	CFG_ENUM("auth.acl_default", auth.acl_default, "allow", cfg_auth_defaults,
	    "Verdict of a SUBSCRIBE or PUBLISH that no ACL rule decides."),
	CFG_JSON("auth.rules", auth.rules,
	    "Ordered ACL rules (YAML sequence of {permission, action, topic, max_qos, retain, delegate}); see docs/auth.md."),
	CFG_JSON("auth.callbacks", auth.callbacks,
	    "Named HTTP callbacks for delegated ACL rules (mapping name -> {url, timeout_ms, retries, cache_ttl_ms, on_error}); see docs/auth.md."),
	CFG_JSON("auth.listener_chains", auth.listener_chains,
	    "Per-listener chains overriding auth.chain (mapping mqtt|mqtts|ws|wss -> [methods])."),
	CFG_ENUM("auth.jwt.alg", auth.jwt.alg, "HS256", cfg_auth_algs,
	    "The one JWT algorithm accepted; tokens with any other alg (including none) are refused."),
	CFG_STR("auth.jwt.key", auth.jwt.key, "", NO, false,
	    "JWT verification key inline: the HS256 secret or a PEM public key (prefer the environment variable)."),
	CFG_STR("auth.jwt.key_file", auth.jwt.key_file, "", NO, false,
	    "File holding the JWT verification key (HS256 secret bytes or PEM public key)."),
	CFG_ENUM("auth.jwt.token_field", auth.jwt.token_field, "password", cfg_auth_fields,
	    "CONNECT field carrying the JWT."),
	CFG_U32("auth.jwt.leeway_s", auth.jwt.leeway_s, "30", 0, 86400,
	    "Seconds of clock skew tolerated when checking exp and nbf."),
	CFG_STR("auth.jwt.user_claim", auth.jwt.user_claim, "sub", NO, true,
	    "JWT claim whose string value becomes the user (%u)."),
	CFG_STR("auth.jwt.acl_claim", auth.jwt.acl_claim, "", NO, false,
	    "JWT claim carrying per-client ACL rules (JSON array of rules); empty disables."),
	CFG_LIST("auth.jwt.attr_claims", auth.jwt.attr_claims, "", NO, false,
	    "JWT claims exported as attributes usable as %{name} in ACL topics."),
	CFG_STR("auth.http.url", auth.http.url, "", NO, false,
	    "URL of the CONNECT authentication callback (POST JSON)."),
	CFG_U32("auth.http.timeout_ms", auth.http.timeout_ms, "2000", 1, 600000,
	    "Milliseconds one callback attempt may take."),
	CFG_U32("auth.http.retries", auth.http.retries, "1", 0, 10,
	    "Extra attempts after a failed (not denied) callback."),
	CFG_U32("auth.http.cache_ttl_ms", auth.http.cache_ttl_ms, "60000", 0, 86400000,
	    "Milliseconds a callback answer is reused for the same credentials; 0 disables the cache."),
	CFG_ENUM("auth.http.on_error", auth.http.on_error, "deny", cfg_auth_on_error,
	    "Answer when the callback service is down: deny, allow, or ignore (try the next method)."),
	CFG_STR("auth.file.path", auth.file.path, "", NO, false,
	    "Password file: one user:pbkdf2-sha256:<iterations>:<salt b64>:<hash b64> per line."),

	CFG_U32("cluster.member_down_ms", cluster.member_down_ms, "1000", 0, 600000,
	    "A broker with no live connection for this long leaves the broker set (its slots move); also how long a new member may take to answer."),
	CFG_U32("cluster.dns_refresh_ms", cluster.dns_refresh_ms, "5000", 100, 3600000,
	    "How often dns:// broker entries are resolved again."),

	CFG_ENUM("store.backend", store.backend, "memory", cfg_store_backends,
	    "Session store: memory (single process) or redis."),
	CFG_STR("store.redis_url", store.redis_url, "redis://127.0.0.1:6379/0", NO, false,
	    "Redis URL redis://[:password@]host:port/db, used when store.backend is redis."),
	CFG_U32("store.redis_timeout_ms", store.redis_timeout_ms, "2000", 10, 600000,
	    "Milliseconds one Redis connect or reply may take before the connection is dropped and retried."),
	CFG_STR("store.key_prefix", store.key_prefix, "hawser:", NO, false,
	    "Prefix of every Redis key (several deployments may share one Redis); no { or }."),
};

#undef HP
#undef NU
#undef MB
#undef NO

#define CFG_N (sizeof(cfg_table) / sizeof(cfg_table[0]))
#define CFG_ENV_PREFIX "HAWSER_"

// Environment variables with the HAWSER_ prefix that are not keys: the
// config file path, and the repository's own tooling variables (scripts,
// bench and the integration harness), which a developer may have exported
// in the shell that starts a binary.
static const char *const cfg_env_allowed[] = {
	HW_CONFIG_ENV_FILE,
	"HAWSER_BIN",         // bench/run.sh
	"HAWSER_BIN_DIR",     // scripts/test.sh, tests/integration
	"HAWSER_TEST_TARGET", // tests/integration
	"HAWSER_PYTHON",      // scripts/deps.sh
	NULL,
};

// ---------------------------------------------------------------------------
// Small helpers

// cfg_fail sets *why to a formatted heap string (when why is not NULL) and
// returns HW_ECONFIG.
static hw_err cfg_fail(char **why, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static hw_err cfg_fail(char **why, const char *fmt, ...)
{
	va_list ap;
	int     n;
	char   *s;

	if (why == NULL)
		return HW_ECONFIG;
	*why = NULL;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
		return HW_ECONFIG;
	va_start(ap, fmt);
	vsnprintf(s, (size_t)n + 1, fmt, ap);
	va_end(ap);
	*why = s;
	return HW_ECONFIG;
}

static void *cfg_field(hw_config *cfg, const cfg_entry *e)
{
	return (char *)cfg + e->off;
}

static const void *cfg_cfield(const hw_config *cfg, const cfg_entry *e)
{
	return (const char *)cfg + e->off;
}

static const cfg_entry *cfg_find(const char *key)
{
	for (size_t i = 0; i < CFG_N; i++) {
		if (strcmp(cfg_table[i].key, key) == 0)
			return &cfg_table[i];
	}
	return NULL;
}

// cfg_env_name writes the environment variable name of e into dst.
static void cfg_env_name(const cfg_entry *e, char *dst, size_t cap)
{
	size_t n = 0;

	for (const char *p = CFG_ENV_PREFIX; *p != '\0' && n + 1 < cap; p++)
		dst[n++] = *p;
	for (const char *p = e->key; *p != '\0' && n + 1 < cap; p++)
		dst[n++] = *p == '.' ? '_' : (char)toupper((unsigned char)*p);
	dst[n] = '\0';
}

// cfg_distance is the Levenshtein distance of a and b (for "did you mean").
static size_t cfg_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t row[128];

	if (lb >= sizeof(row) / sizeof(row[0]) || la >= 128)
		return (size_t)-1;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j];
			size_t best = diag + (tolower((unsigned char)a[i - 1]) !=
			                         tolower((unsigned char)b[j - 1]));
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

// cfg_suggest returns the key (or env name, when env) closest to name, or
// NULL when nothing is close.
static const char *cfg_suggest(const char *name, bool env, char *buf, size_t cap)
{
	const char *best = NULL;
	size_t      best_d = 4; // suggest only close matches

	for (size_t i = 0; i < CFG_N; i++) {
		const char *cand = cfg_table[i].key;
		if (env) {
			cfg_env_name(&cfg_table[i], buf, cap);
			cand = buf;
		}
		size_t d = cfg_distance(name, cand);
		if (d < best_d) {
			best_d = d;
			best = cfg_table[i].key;
		}
	}
	if (best != NULL && env) {
		cfg_env_name(cfg_find(best), buf, cap);
		return buf;
	}
	return best;
}

static void cfg_list_free(char **list)
{
	if (list == NULL)
		return;
	for (char **p = list; *p != NULL; p++)
		free(*p);
	free(list);
}

static size_t cfg_list_len(char *const *list)
{
	size_t n = 0;

	while (list != NULL && list[n] != NULL)
		n++;
	return n;
}

// ---------------------------------------------------------------------------
// Format checks

static bool cfg_parse_port(const char *s, int *port)
{
	long v = 0;

	if (*s == '\0' || strlen(s) > 5)
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		v = v * 10 + (*p - '0');
	}
	if (v > 65535)
		return false;
	*port = (int)v;
	return true;
}

// cfg_split_host_port is hw_config_split_host_port with an option to allow
// an empty host (NNG accepts tcp://:port).
static hw_err cfg_split_host_port(const char *s, char *host, size_t cap,
    int *port, bool empty_host_ok)
{
	const char *colon;
	const char *h = s;
	size_t      hl;

	if (s == NULL)
		return HW_EINVAL;
	if (*s == '[') {
		const char *close = strchr(s, ']');
		if (close == NULL || close[1] != ':')
			return HW_EINVAL;
		h = s + 1;
		hl = (size_t)(close - h);
		colon = close + 1;
		if (hl == 0)
			return HW_EINVAL;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return HW_EINVAL;
		hl = (size_t)(colon - s);
		// An unbracketed IPv6 address is ambiguous: refuse it.
		if (memchr(s, ':', hl) != NULL)
			return HW_EINVAL;
	}
	if ((hl == 0 && !empty_host_ok) || hl >= cap)
		return HW_EINVAL;
	for (size_t i = 0; i < hl; i++) {
		if (isspace((unsigned char)h[i]) || h[i] == '/')
			return HW_EINVAL;
	}
	if (!cfg_parse_port(colon + 1, port))
		return HW_EINVAL;
	memcpy(host, h, hl);
	host[hl] = '\0';
	return HW_OK;
}

hw_err hw_config_split_host_port(const char *s, char *host, size_t cap, int *port)
{
	return cfg_split_host_port(s, host, cap, port, false);
}

// cfg_check_value returns NULL when s passes e's format check, or a static
// description of what was expected.
static const char *cfg_check_value(const cfg_entry *e, const char *s)
{
	char host[256];
	int  port;

	if (*s == '\0')
		return NULL; // emptiness is a validate rule (nonempty), not a format
	switch (e->check) {
	case CFG_CHECK_NONE:
		return NULL;
	case CFG_CHECK_HOSTPORT:
		if (cfg_split_host_port(s, host, sizeof(host), &port, false) != HW_OK)
			return "expected host:port (e.g. 0.0.0.0:1883 or [::]:1883)";
		return NULL;
	case CFG_CHECK_MEMBER:
		if (strncmp(s, "dns://", 6) == 0) {
			if (cfg_split_host_port(s + 6, host, sizeof(host), &port, false) != HW_OK)
				return "expected dns://name:port";
			return NULL;
		}
		__attribute__((fallthrough)); // otherwise an NNG URL
	case CFG_CHECK_NNG_URL:
		if (strncmp(s, "tcp://", 6) == 0 || strncmp(s, "tcp4://", 7) == 0 ||
		    strncmp(s, "tcp6://", 7) == 0) {
			const char *rest = strstr(s, "://") + 3;
			if (cfg_split_host_port(rest, host, sizeof(host), &port, true) != HW_OK)
				return "expected tcp://host:port";
			return NULL;
		}
		if ((strncmp(s, "ipc://", 6) == 0 && s[6] != '\0') ||
		    (strncmp(s, "inproc://", 9) == 0 && s[9] != '\0'))
			return NULL;
		return "expected an NNG URL (tcp://host:port, ipc://path or inproc://name)";
	}
	return NULL;
}

// ---------------------------------------------------------------------------
// Parsing one value

static bool cfg_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool cfg_parse_u32(const char *s, uint32_t *out)
{
	uint64_t v = 0;

	if (*s == '\0')
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)v;
	return true;
}

// cfg_trim_dup copies s[0..n) without leading and trailing blanks.
static char *cfg_trim_dup(const char *s, size_t n)
{
	char *d;

	while (n > 0 && isspace((unsigned char)*s))
		s++, n--;
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	if ((d = malloc(n + 1)) == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

// cfg_list_add appends a copy of item (trimmed) to *list of length *n.
static hw_err cfg_list_add(char ***list, size_t *n, const char *item, size_t len)
{
	char **nl = realloc(*list, (*n + 2) * sizeof(char *));

	if (nl == NULL)
		return HW_ENOMEM;
	*list = nl;
	if ((nl[*n] = cfg_trim_dup(item, len)) == NULL)
		return HW_ENOMEM;
	if (nl[*n][0] == '\0') {
		// "a,,b" or a trailing comma: empty items are skipped.
		free(nl[*n]);
		nl[*n] = NULL;
		return HW_OK;
	}
	(*n)++;
	nl[*n] = NULL;
	return HW_OK;
}

// cfg_check_list checks every element of list against e's format.
static hw_err cfg_check_list(const cfg_entry *e, char *const *list,
    const char *src, char **why)
{
	for (size_t i = 0; list[i] != NULL; i++) {
		const char *bad = cfg_check_value(e, list[i]);
		if (bad != NULL)
			return cfg_fail(why, "%s: bad list element \"%s\" (%s): %s",
			    e->key, list[i], src, bad);
	}
	return HW_OK;
}

// cfg_assign_list replaces e's list with `list` (taking ownership on success)
// after checking it.
static hw_err cfg_assign_list(hw_config *cfg, const cfg_entry *e, char **list,
    const char *src, char **why)
{
	char ***field = cfg_field(cfg, e);
	hw_err  rv;

	if ((rv = cfg_check_list(e, list, src, why)) != HW_OK)
		return rv;
	cfg_list_free(*field);
	*field = list;
	return HW_OK;
}

// cfg_apply_text parses text as a value of e and stores it in cfg. On error
// cfg is unchanged. Lists are comma-separated.
static hw_err cfg_apply_text(hw_config *cfg, const cfg_entry *e, const char *text,
    const char *src, char **why)
{
	void       *field = cfg_field(cfg, e);
	const char *bad;

	switch (e->type) {
	case CFG_STRING:
	case CFG_ENUM: {
		char *copy;
		if (e->type == CFG_ENUM) {
			bool ok = false;
			for (const char *const *a = e->allowed; *a != NULL; a++)
				ok = ok || strcmp(*a, text) == 0;
			if (!ok) {
				char allowed[256] = "";
				for (const char *const *a = e->allowed; *a != NULL; a++) {
					if (a != e->allowed)
						strncat(allowed, "|", sizeof(allowed) - strlen(allowed) - 1);
					strncat(allowed, *a, sizeof(allowed) - strlen(allowed) - 1);
				}
				return cfg_fail(why, "%s: bad value \"%s\" (%s): expected one of %s",
				    e->key, text, src, allowed);
			}
		}
		if ((bad = cfg_check_value(e, text)) != NULL)
			return cfg_fail(why, "%s: bad value \"%s\" (%s): %s", e->key,
			    text, src, bad);
		if ((copy = strdup(text)) == NULL)
			return cfg_fail(why, "%s: out of memory", e->key);
		free(*(char **)field);
		*(char **)field = copy;
		return HW_OK;
	}
	case CFG_LIST: {
		char      **list = calloc(1, sizeof(char *));
		size_t      n = 0;
		const char *p = text;
		hw_err      rv;
		if (list == NULL)
			return cfg_fail(why, "%s: out of memory", e->key);
		while (*p != '\0') {
			const char *comma = strchr(p, ',');
			size_t      len = comma != NULL ? (size_t)(comma - p) : strlen(p);
			if (cfg_list_add(&list, &n, p, len) != HW_OK) {
				cfg_list_free(list);
				return cfg_fail(why, "%s: out of memory", e->key);
			}
			p += len;
			if (*p == ',')
				p++;
		}
		if ((rv = cfg_assign_list(cfg, e, list, src, why)) != HW_OK)
			cfg_list_free(list);
		return rv;
	}
	case CFG_U32: {
		uint32_t v;
		if (!cfg_parse_u32(text, &v))
			return cfg_fail(why,
			    "%s: bad value \"%s\" (%s): expected a decimal integer %u..%u",
			    e->key, text, src, e->min, e->max);
		if (v < e->min || v > e->max)
			return cfg_fail(why, "%s: value \"%s\" (%s) out of range %u..%u",
			    e->key, text, src, e->min, e->max);
		*(uint32_t *)field = v;
		return HW_OK;
	}
	case CFG_JSON: {
		// Only the shape is checked here; the owning module parses and
		// validates the content (it knows the schema).
		const char *p = text;
		char       *copy;
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '\0' && *p != '[' && *p != '{')
			return cfg_fail(why, "%s: bad value (%s): expected JSON text (an array or an object)",
			    e->key, src);
		if ((copy = strdup(text)) == NULL)
			return cfg_fail(why, "%s: out of memory", e->key);
		free(*(char **)field);
		*(char **)field = copy;
		return HW_OK;
	}
	case CFG_BOOL: {
		bool v;
		if (!cfg_parse_bool(text, &v))
			return cfg_fail(why,
			    "%s: bad value \"%s\" (%s): expected true/false/yes/no/on/off/1/0",
			    e->key, text, src);
		*(bool *)field = v;
		return HW_OK;
	}
	}
	return cfg_fail(why, "%s: internal error: bad type", e->key);
}

// ---------------------------------------------------------------------------
// Defaults

static hw_err cfg_default_node_id(hw_config *cfg)
{
	char host[256];
	char id[300];

	if (gethostname(host, sizeof(host)) != 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "hawser");
	host[sizeof(host) - 1] = '\0';
	snprintf(id, sizeof(id), "%s-%ld", host, (long)getpid());
	free(cfg->node.id);
	if ((cfg->node.id = strdup(id)) == NULL)
		return HW_ENOMEM;
	return HW_OK;
}

hw_err hw_config_init(hw_config *cfg)
{
	char  *why = NULL;
	hw_err rv;

	memset(cfg, 0, sizeof(*cfg));
	for (size_t i = 0; i < CFG_N; i++) {
		const cfg_entry *e = &cfg_table[i];
		if (e->def == NULL)
			continue;
		if ((rv = cfg_apply_text(cfg, e, e->def, "built-in default", &why)) != HW_OK) {
			// Only ENOMEM can get here: a bad default is caught by the
			// unit tests the first time it runs.
			free(why);
			hw_config_fini(cfg);
			return HW_ENOMEM;
		}
	}
	if ((rv = cfg_default_node_id(cfg)) != HW_OK) {
		hw_config_fini(cfg);
		return rv;
	}
	return HW_OK;
}

void hw_config_fini(hw_config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < CFG_N; i++) {
		const cfg_entry *e = &cfg_table[i];
		void            *field = cfg_field(cfg, e);
		if (e->type == CFG_STRING || e->type == CFG_ENUM || e->type == CFG_JSON) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (e->type == CFG_LIST) {
			cfg_list_free(*(char ***)field);
			*(char ***)field = NULL;
		}
	}
	memset(cfg, 0, sizeof(*cfg));
}

// ---------------------------------------------------------------------------
// --set and environment

hw_err hw_config_set(hw_config *cfg, const char *assignment, char **why)
{
	const char      *eq = strchr(assignment, '=');
	char             key[256];
	size_t           kl;
	const cfg_entry *e;
	char             sugg[256];
	const char      *near;

	if (eq == NULL)
		return cfg_fail(why, "%s: --set expects key=value", assignment);
	kl = (size_t)(eq - assignment);
	if (kl >= sizeof(key))
		return cfg_fail(why, "%.40s...: unknown key (--set)", assignment);
	memcpy(key, assignment, kl);
	key[kl] = '\0';
	if ((e = cfg_find(key)) == NULL) {
		near = cfg_suggest(key, false, sugg, sizeof(sugg));
		return cfg_fail(why, "%s: unknown key (--set)%s%s%s", key,
		    near ? "; did you mean " : "", near ? near : "", near ? "?" : "");
	}
	return cfg_apply_text(cfg, e, eq + 1, "--set", why);
}

hw_err hw_config_load_env(hw_config *cfg, char *const *envp, char **why)
{
	char   name[256];
	char   src[300];
	hw_err rv;

	for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
		const char      *kv = envp[i];
		const char      *eq = strchr(kv, '=');
		const cfg_entry *e = NULL;
		bool             allowed = false;
		size_t           nl;

		if (eq == NULL || strncmp(kv, CFG_ENV_PREFIX, strlen(CFG_ENV_PREFIX)) != 0)
			continue;
		nl = (size_t)(eq - kv);
		if (nl >= sizeof(name))
			return cfg_fail(why, "%.40s...: unknown environment variable", kv);
		memcpy(name, kv, nl);
		name[nl] = '\0';
		for (const char *const *a = cfg_env_allowed; *a != NULL; a++)
			allowed = allowed || strcmp(*a, name) == 0;
		if (allowed)
			continue;
		for (size_t k = 0; k < CFG_N && e == NULL; k++) {
			char env[256];
			cfg_env_name(&cfg_table[k], env, sizeof(env));
			if (strcmp(env, name) == 0)
				e = &cfg_table[k];
		}
		if (e == NULL) {
			char        sugg[256];
			const char *near = cfg_suggest(name, true, sugg, sizeof(sugg));
			return cfg_fail(why, "%s: unknown environment variable (no such key)%s%s%s",
			    name, near ? "; did you mean " : "", near ? near : "",
			    near ? "?" : "");
		}
		snprintf(src, sizeof(src), "environment %s", name);
		if ((rv = cfg_apply_text(cfg, e, eq + 1, src, why)) != HW_OK)
			return rv;
	}
	return HW_OK;
}

// ---------------------------------------------------------------------------
// YAML

typedef struct cfg_yaml {
	hw_config       *cfg;
	yaml_document_t *doc;
	const char      *path;
	bool             seen[CFG_N]; // duplicate keys are errors
} cfg_yaml;

static bool cfg_yaml_is_null(const yaml_node_t *n)
{
	const char *v = (const char *)n->data.scalar.value;

	return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    (v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	        strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0);
}

static bool cfg_has_prefix_key(const char *prefix)
{
	size_t n = strlen(prefix);

	for (size_t i = 0; i < CFG_N; i++) {
		if (strncmp(cfg_table[i].key, prefix, n) == 0 && cfg_table[i].key[n] == '.')
			return true;
	}
	return false;
}

// cfg_json_scalar appends YAML scalar n as JSON: plain true/false/null and
// numbers keep their type, everything else becomes a string.
static hw_err cfg_json_scalar(const yaml_node_t *n, hw_buf *out)
{
	const char *v = (const char *)n->data.scalar.value;
	size_t      len = n->data.scalar.length;
	hw_err      rv = HW_OK;

	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
		bool num = len > 0;
		for (size_t i = 0; i < len && num; i++)
			num = isdigit((unsigned char)v[i]) || (i == 0 && v[i] == '-' && len > 1);
		if (num || strcmp(v, "true") == 0 || strcmp(v, "false") == 0 ||
		    strcmp(v, "null") == 0)
			return hw_buf_append(out, v, len);
		if (cfg_yaml_is_null(n))
			return hw_buf_append(out, "null", 4);
	}
	rv = hw_buf_append_u8(out, '"');
	for (size_t i = 0; i < len && rv == HW_OK; i++) {
		unsigned char c = (unsigned char)v[i];
		char          esc[8];
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			rv = hw_buf_append(out, esc, 2);
		} else if (c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", c);
			rv = hw_buf_append(out, esc, 6);
		} else {
			rv = hw_buf_append_u8(out, c);
		}
	}
	if (rv == HW_OK)
		rv = hw_buf_append_u8(out, '"');
	return rv;
}

// cfg_yaml_json appends node n (and everything under it) as JSON text.
static hw_err cfg_yaml_json(yaml_document_t *doc, yaml_node_t *n, hw_buf *out, int depth)
{
	hw_err rv = HW_OK;

	if (n == NULL || depth > 32)
		return HW_EINVAL;
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return cfg_json_scalar(n, out);
	case YAML_SEQUENCE_NODE:
		rv = hw_buf_append_u8(out, '[');
		for (yaml_node_item_t *it = n->data.sequence.items.start;
		     it < n->data.sequence.items.top && rv == HW_OK; it++) {
			if (it != n->data.sequence.items.start)
				rv = hw_buf_append_u8(out, ',');
			if (rv == HW_OK)
				rv = cfg_yaml_json(doc, yaml_document_get_node(doc, *it), out, depth + 1);
		}
		return rv != HW_OK ? rv : hw_buf_append_u8(out, ']');
	case YAML_MAPPING_NODE:
		rv = hw_buf_append_u8(out, '{');
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start;
		     p < n->data.mapping.pairs.top && rv == HW_OK; p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			if (k == NULL || k->type != YAML_SCALAR_NODE)
				return HW_EINVAL;
			if (p != n->data.mapping.pairs.start)
				rv = hw_buf_append_u8(out, ',');
			if (rv == HW_OK) {
				// Keys are always strings in JSON.
				yaml_node_t key = *k;
				key.data.scalar.style = YAML_DOUBLE_QUOTED_SCALAR_STYLE;
				rv = cfg_json_scalar(&key, out);
			}
			if (rv == HW_OK)
				rv = hw_buf_append_u8(out, ':');
			if (rv == HW_OK)
				rv = cfg_yaml_json(doc, yaml_document_get_node(doc, p->value), out,
				    depth + 1);
		}
		return rv != HW_OK ? rv : hw_buf_append_u8(out, '}');
	default:
		return HW_EINVAL;
	}
}

// cfg_yaml_leaf applies the value node v to entry e.
static hw_err cfg_yaml_leaf(cfg_yaml *y, const cfg_entry *e, yaml_node_t *v,
    const char *src, char **why)
{
	if (e->type == CFG_JSON) {
		hw_buf out = { 0 };
		hw_err rv;
		if (v->type == YAML_SCALAR_NODE) // JSON text in a string, or null
			return cfg_apply_text(y->cfg, e,
			    cfg_yaml_is_null(v) ? "" : (const char *)v->data.scalar.value, src, why);
		if ((rv = cfg_yaml_json(y->doc, v, &out, 0)) == HW_OK)
			rv = hw_buf_append_u8(&out, 0);
		if (rv != HW_OK) {
			hw_buf_fini(&out);
			return cfg_fail(why, "%s: %s (%s)", e->key,
			    rv == HW_ENOMEM ? "out of memory" : "nested too deeply or malformed", src);
		}
		rv = cfg_apply_text(y->cfg, e, (const char *)out.ptr, src, why);
		hw_buf_fini(&out);
		return rv;
	}
	if (v->type == YAML_MAPPING_NODE)
		return cfg_fail(why, "%s: expected a %s, not a mapping (%s)", e->key,
		    cfg_type_names[e->type], src);
	if (e->type == CFG_LIST) {
		char      **list;
		size_t      n = 0;
		hw_err      rv;
		if (v->type == YAML_SCALAR_NODE && !cfg_yaml_is_null(v))
			return cfg_fail(why, "%s: expected a YAML sequence (- item), got \"%s\" (%s)",
			    e->key, (const char *)v->data.scalar.value, src);
		if ((list = calloc(1, sizeof(char *))) == NULL)
			return cfg_fail(why, "%s: out of memory", e->key);
		if (v->type == YAML_SEQUENCE_NODE) {
			for (yaml_node_item_t *it = v->data.sequence.items.start;
			     it < v->data.sequence.items.top; it++) {
				yaml_node_t *item = yaml_document_get_node(y->doc, *it);
				if (item == NULL || item->type != YAML_SCALAR_NODE) {
					cfg_list_free(list);
					return cfg_fail(why, "%s: list items must be scalars (%s)",
					    e->key, src);
				}
				if (cfg_list_add(&list, &n, (const char *)item->data.scalar.value,
				        item->data.scalar.length) != HW_OK) {
					cfg_list_free(list);
					return cfg_fail(why, "%s: out of memory", e->key);
				}
			}
		}
		if ((rv = cfg_assign_list(y->cfg, e, list, src, why)) != HW_OK)
			cfg_list_free(list);
		return rv;
	}
	if (v->type != YAML_SCALAR_NODE)
		return cfg_fail(why, "%s: expected a %s, not a sequence (%s)", e->key,
		    cfg_type_names[e->type], src);
	if (cfg_yaml_is_null(v) && (e->type == CFG_STRING))
		return cfg_apply_text(y->cfg, e, "", src, why);
	return cfg_apply_text(y->cfg, e, (const char *)v->data.scalar.value, src, why);
}

// cfg_yaml_mapping applies every pair of mapping m whose keys are prefixed
// with `prefix` (sections nest: edge: {mqtt_listen: ...}).
static hw_err cfg_yaml_mapping(cfg_yaml *y, yaml_node_t *m, const char *prefix,
    char **why)
{
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start;
	     p < m->data.mapping.pairs.top; p++) {
		yaml_node_t     *k = yaml_document_get_node(y->doc, p->key);
		yaml_node_t     *v = yaml_document_get_node(y->doc, p->value);
		char             full[256];
		char             src[512];
		const cfg_entry *e;
		hw_err           rv;

		if (k == NULL || v == NULL)
			return cfg_fail(why, "%s: malformed YAML document", y->path);
		snprintf(src, sizeof(src), "%s:%lu", y->path,
		    (unsigned long)k->start_mark.line + 1);
		if (k->type != YAML_SCALAR_NODE)
			return cfg_fail(why, "%s: keys must be scalars (%s)",
			    prefix[0] ? prefix : "(top level)", src);
		if ((size_t)snprintf(full, sizeof(full), "%s%s%s", prefix,
		        prefix[0] ? "." : "", (const char *)k->data.scalar.value) >= sizeof(full))
			return cfg_fail(why, "%.60s...: unknown key (%s)", full, src);
		if ((e = cfg_find(full)) != NULL) {
			size_t idx = (size_t)(e - cfg_table);
			if (y->seen[idx])
				return cfg_fail(why, "%s: duplicate key (%s)", full, src);
			y->seen[idx] = true;
			snprintf(src, sizeof(src), "%s:%lu", y->path,
			    (unsigned long)v->start_mark.line + 1);
			if ((rv = cfg_yaml_leaf(y, e, v, src, why)) != HW_OK)
				return rv;
			continue;
		}
		if (cfg_has_prefix_key(full)) {
			if (v->type == YAML_MAPPING_NODE) {
				if ((rv = cfg_yaml_mapping(y, v, full, why)) != HW_OK)
					return rv;
				continue;
			}
			if (cfg_yaml_is_null(v))
				continue; // "edge:" with nothing under it
			return cfg_fail(why, "%s: is a section and needs a mapping of keys (%s)",
			    full, src);
		}
		{
			char        sugg[256];
			const char *near = cfg_suggest(full, false, sugg, sizeof(sugg));
			return cfg_fail(why, "%s: unknown %s (%s)%s%s%s", full,
			    prefix[0] ? "key" : "section", src,
			    near ? "; did you mean " : "", near ? near : "", near ? "?" : "");
		}
	}
	return HW_OK;
}

hw_err hw_config_load_file(hw_config *cfg, const char *path, char **why)
{
	FILE           *fp;
	yaml_parser_t   parser;
	yaml_document_t doc;
	yaml_node_t    *root;
	cfg_yaml       *y = NULL;
	hw_err          rv = HW_OK;

	if ((fp = fopen(path, "rb")) == NULL)
		return cfg_fail(why, "%s: cannot open config file: %s", path, strerror(errno));
	if (!yaml_parser_initialize(&parser)) {
		rv = cfg_fail(why, "%s: out of memory", path);
		goto out_file;
	}
	yaml_parser_set_input_file(&parser, fp);
	if (!yaml_parser_load(&parser, &doc)) {
		rv = cfg_fail(why, "%s: invalid YAML at %s:%lu: %s", path, path,
		    (unsigned long)parser.problem_mark.line + 1,
		    parser.problem != NULL ? parser.problem : "parse error");
		goto out_parser;
	}
	root = yaml_document_get_root_node(&doc);
	if (root == NULL || cfg_yaml_is_null(root))
		goto out_doc; // an empty file changes nothing
	if (root->type != YAML_MAPPING_NODE) {
		rv = cfg_fail(why, "%s: the top level must be a mapping of sections (%s:%lu)",
		    path, path, (unsigned long)root->start_mark.line + 1);
		goto out_doc;
	}
	if ((y = calloc(1, sizeof(*y))) == NULL) {
		rv = cfg_fail(why, "%s: out of memory", path);
		goto out_doc;
	}
	y->cfg = cfg;
	y->doc = &doc;
	y->path = path;
	rv = cfg_yaml_mapping(y, root, "", why);
	free(y);
out_doc:
	yaml_document_delete(&doc);
out_parser:
	yaml_parser_delete(&parser);
out_file:
	fclose(fp);
	return rv;
}

// ---------------------------------------------------------------------------
// Validation

hw_err hw_config_validate(const hw_config *cfg, char **why)
{
	static const struct {
		const char *listener;
		const char *needs;
	} tls_rules[] = {
		{ "edge.mqtts_listen", "edge.tls_cert" },
		{ "edge.mqtts_listen", "edge.tls_key" },
		{ "edge.wss_listen", "edge.tls_cert" },
		{ "edge.wss_listen", "edge.tls_key" },
	};

	for (size_t i = 0; i < CFG_N; i++) {
		const cfg_entry *e = &cfg_table[i];
		const void      *field = cfg_cfield(cfg, e);
		const char      *bad;

		if (e->type == CFG_STRING || e->type == CFG_ENUM) {
			const char *s = *(char *const *)field;
			if (s == NULL || s[0] == '\0') {
				if (e->nonempty)
					return cfg_fail(why, "%s: must not be empty", e->key);
				continue;
			}
			if ((bad = cfg_check_value(e, s)) != NULL)
				return cfg_fail(why, "%s: bad value \"%s\": %s", e->key, s, bad);
		} else if (e->type == CFG_LIST) {
			char *const *l = *(char **const *)field;
			if (e->nonempty && cfg_list_len(l) == 0)
				return cfg_fail(why, "%s: must list at least one URL", e->key);
			for (size_t k = 0; l != NULL && l[k] != NULL; k++) {
				if ((bad = cfg_check_value(e, l[k])) != NULL)
					return cfg_fail(why, "%s: bad list element \"%s\": %s",
					    e->key, l[k], bad);
			}
		} else if (e->type == CFG_U32) {
			uint32_t v = *(const uint32_t *)field;
			if (v < e->min || v > e->max)
				return cfg_fail(why, "%s: value %u out of range %u..%u",
				    e->key, v, e->min, e->max);
		}
	}
	for (size_t i = 0; i < sizeof(tls_rules) / sizeof(tls_rules[0]); i++) {
		const char *l = *(char *const *)cfg_cfield(cfg, cfg_find(tls_rules[i].listener));
		const char *n = *(char *const *)cfg_cfield(cfg, cfg_find(tls_rules[i].needs));
		if (l != NULL && l[0] != '\0' && (n == NULL || n[0] == '\0'))
			return cfg_fail(why, "%s: required when %s is set", tls_rules[i].needs,
			    tls_rules[i].listener);
	}
	return HW_OK;
}

// ---------------------------------------------------------------------------
// Dump, help and reference

static void cfg_put_quoted(FILE *fp, const char *s)
{
	fputc('"', fp);
	for (; s != NULL && *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c < 0x20)
			fprintf(fp, "\\x%02x", c);
		else
			fputc(c, fp);
	}
	fputc('"', fp);
}

// cfg_put_inline writes e's value on one line: YAML flow style for lists.
static void cfg_put_inline(FILE *fp, const hw_config *cfg, const cfg_entry *e)
{
	const void *field = cfg_cfield(cfg, e);

	switch (e->type) {
	case CFG_STRING:
	case CFG_ENUM:
		cfg_put_quoted(fp, *(char *const *)field);
		break;
	case CFG_LIST: {
		char *const *l = *(char **const *)field;
		fputc('[', fp);
		for (size_t k = 0; l != NULL && l[k] != NULL; k++) {
			if (k > 0)
				fputs(", ", fp);
			cfg_put_quoted(fp, l[k]);
		}
		fputc(']', fp);
		break;
	}
	case CFG_U32:
		fprintf(fp, "%u", *(const uint32_t *)field);
		break;
	case CFG_BOOL:
		fputs(*(const bool *)field ? "true" : "false", fp);
		break;
	case CFG_JSON: {
		// JSON is YAML flow syntax: the dump reloads as the same value.
		const char *j = *(char *const *)field;
		if (j == NULL || j[0] == '\0')
			fputs("\"\"", fp);
		else
			fputs(j, fp);
		break;
	}
	}
}

// cfg_dump_level writes, at indentation depth, every key under prefix
// (prefix "" or "edge."), grouping by the next path component in the order
// components first appear in the table.
static void cfg_dump_level(FILE *fp, const hw_config *cfg, const char *prefix, int depth)
{
	size_t pl = strlen(prefix);

	for (size_t i = 0; i < CFG_N; i++) {
		const char *key = cfg_table[i].key;
		const char *rest, *dot;
		size_t      cl;
		bool        first = true;

		if (strncmp(key, prefix, pl) != 0)
			continue;
		rest = key + pl;
		dot = strchr(rest, '.');
		cl = dot != NULL ? (size_t)(dot - rest) : strlen(rest);
		// Print each component once: skip it if an earlier row had it.
		for (size_t j = 0; j < i && first; j++) {
			const char *k2 = cfg_table[j].key;
			if (strncmp(k2, prefix, pl) == 0 && strncmp(k2 + pl, rest, cl) == 0 &&
			    (k2[pl + cl] == '.' || k2[pl + cl] == '\0'))
				first = false;
		}
		if (!first)
			continue;
		fprintf(fp, "%*s%.*s:", depth * 2, "", (int)cl, rest);
		if (dot == NULL) {
			fputc(' ', fp);
			cfg_put_inline(fp, cfg, &cfg_table[i]);
			fputc('\n', fp);
		} else {
			char sub[256];
			snprintf(sub, sizeof(sub), "%s%.*s.", prefix, (int)cl, rest);
			fputc('\n', fp);
			cfg_dump_level(fp, cfg, sub, depth + 1);
		}
	}
}

void hw_config_dump(const hw_config *cfg, FILE *fp)
{
	cfg_dump_level(fp, cfg, "", 0);
}

// cfg_describe_type writes "u32 1..65535", "enum debug|info", "bool"...,
// enum values joined by sep.
static void cfg_describe_type(const cfg_entry *e, char *dst, size_t cap,
    const char *sep)
{
	size_t n;

	switch (e->type) {
	case CFG_U32:
		snprintf(dst, cap, "u32 %u..%u", e->min, e->max);
		return;
	case CFG_ENUM:
		n = (size_t)snprintf(dst, cap, "enum ");
		for (const char *const *a = e->allowed; *a != NULL && n < cap; a++)
			n += (size_t)snprintf(dst + n, cap - n, "%s%s",
			    a == e->allowed ? "" : sep, *a);
		return;
	default:
		snprintf(dst, cap, "%s", cfg_type_names[e->type]);
		return;
	}
}

void hw_config_reference(FILE *fp)
{
	hw_config cfg;

	if (hw_config_init(&cfg) != HW_OK)
		return;
	fputs("# Hawser configuration reference\n\n"
	      "Generated by `hawser-edge --config-reference` from the table in\n"
	      "`libs/core/config.c`; do not edit by hand.\n\n"
	      "Every key can be set in the YAML file (`section:` then `key:`), by its\n"
	      "environment variable, or with `--set key=value`. Precedence: built-in\n"
	      "default < the binary's own defaults < file < environment < `--set`.\n"
	      "Lists are YAML sequences in the file and comma-separated in the\n"
	      "environment and `--set`. Booleans accept true/false/yes/no/on/off/1/0;\n"
	      "integers are decimal. Any `HAWSER_*` variable that names no key is an\n"
	      "error, except `HAWSER_CONFIG` (path of the config file when `-c` is\n"
	      "not given) and the repository's tooling variables `HAWSER_BIN`,\n"
	      "`HAWSER_BIN_DIR`, `HAWSER_TEST_TARGET` and `HAWSER_PYTHON`, which\n"
	      "are ignored.\n\n"
	      "| key | type | default | environment | description |\n"
	      "|---|---|---|---|---|\n", fp);
	for (size_t i = 0; i < CFG_N; i++) {
		const cfg_entry *e = &cfg_table[i];
		char             type[128], env[256];

		// Markdown tables cannot hold a bare '|'.
		cfg_describe_type(e, type, sizeof(type), ", ");
		cfg_env_name(e, env, sizeof(env));
		fprintf(fp, "| `%s` | %s | ", e->key, type);
		if (e->def == NULL) {
			fputs("`<hostname>-<pid>`", fp);
		} else {
			fputc('`', fp);
			cfg_put_inline(fp, &cfg, e);
			fputc('`', fp);
		}
		fprintf(fp, " | `%s` | %s |\n", env, e->doc);
	}
	hw_config_fini(&cfg);
}

// cfg_usage prints --help: options, then every key with its type, env var
// and the default this binary starts from (`dflt` has `defaults` applied).
static void cfg_usage(FILE *fp, const char *prog, const char *summary,
    const hw_config *dflt)
{
	fprintf(fp, "Usage: %s [options]\n", prog);
	if (summary != NULL && summary[0] != '\0')
		fprintf(fp, "%s\n", summary);
	fputs("\nOptions:\n"
	      "  -c, --config FILE     YAML configuration file (or $HAWSER_CONFIG)\n"
	      "      --set KEY=VALUE   set one key; repeatable; wins over file and environment\n"
	      "      --check-config    load and validate the configuration, print \"config ok\", exit\n"
	      "      --print-config    print the effective configuration as YAML, exit\n"
	      "      --config-reference print a Markdown reference of every key, exit\n"
	      "  -h, --help            this text\n"
	      "  -V, --version         print the version\n"
	      "\nConfiguration keys (default < file < environment < --set):\n", fp);
	for (size_t i = 0; i < CFG_N; i++) {
		const cfg_entry *e = &cfg_table[i];
		char             type[128], env[256];

		cfg_describe_type(e, type, sizeof(type), "|");
		cfg_env_name(e, env, sizeof(env));
		fprintf(fp, "  %s (%s, env %s)\n      %s\n      default: ", e->key, type,
		    env, e->doc);
		// A computed default (node.id) is shown by its rule, not by
		// this process's value.
		if (e->def == NULL)
			fputs("<hostname>-<pid>", fp);
		else if (dflt != NULL)
			cfg_put_inline(fp, dflt, e);
		fputc('\n', fp);
	}
}

enum {
	CFG_OPT_SET = 0x100,
	CFG_OPT_CHECK,
	CFG_OPT_PRINT,
	CFG_OPT_REFERENCE,
};

static const char *cfg_env_get(char *const *envp, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; envp != NULL && envp[i] != NULL; i++) {
		if (strncmp(envp[i], name, n) == 0 && envp[i][n] == '=')
			return envp[i] + n + 1;
	}
	return NULL;
}

// cfg_apply_defaults applies the binary's preferred "key=value" defaults.
static hw_err cfg_apply_defaults(hw_config *cfg, const char *const *defaults, char **why)
{
	hw_err rv;

	for (size_t i = 0; defaults != NULL && defaults[i] != NULL; i++) {
		if ((rv = hw_config_set(cfg, defaults[i], why)) != HW_OK)
			return rv;
	}
	return HW_OK;
}

int hw_cli_load(hw_config *cfg, int argc, char **argv, char *const *envp,
    const char *prog, const char *summary, const char *const *defaults)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "set", required_argument, NULL, CFG_OPT_SET },
		{ "check-config", no_argument, NULL, CFG_OPT_CHECK },
		{ "print-config", no_argument, NULL, CFG_OPT_PRINT },
		{ "config-reference", no_argument, NULL, CFG_OPT_REFERENCE },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	const char  *path = NULL;
	const char **sets = NULL;
	size_t       nsets = 0;
	bool         check = false, print = false, help = false;
	char        *why = NULL;
	int          ret = 2;
	int          c;

	memset(cfg, 0, sizeof(*cfg));
	if (prog == NULL)
		prog = "hawser";
	if ((sets = calloc((size_t)(argc > 0 ? argc : 1), sizeof(*sets))) == NULL) {
		fprintf(stderr, "%s: out of memory\n", prog);
		return 2;
	}
	// getopt keeps its state in globals; 0 asks glibc for a full restart so
	// that this function can run more than once (tests do).
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":c:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'c': path = optarg; break;
		case CFG_OPT_SET: sets[nsets++] = optarg; break;
		case CFG_OPT_CHECK: check = true; break;
		case CFG_OPT_PRINT: print = true; break;
		case CFG_OPT_REFERENCE:
			hw_config_reference(stdout);
			ret = 1;
			goto out;
		case 'h': help = true; break;
		case 'V':
			printf("hawser %s\n", HAWSER_VERSION);
			ret = 1;
			goto out;
		case ':':
			fprintf(stderr, "%s: option %s needs an argument (see --help)\n", prog,
			    argv[optind - 1]);
			goto out;
		default:
			fprintf(stderr, "%s: unknown option %s (see --help)\n", prog,
			    argv[optind - 1]);
			goto out;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n", prog, argv[optind]);
		goto out;
	}
	if (hw_config_init(cfg) != HW_OK) {
		fprintf(stderr, "%s: out of memory\n", prog);
		goto out;
	}
	if (cfg_apply_defaults(cfg, defaults, &why) != HW_OK)
		goto fail;
	if (help) {
		cfg_usage(stdout, prog, summary, cfg);
		ret = 1;
		goto out;
	}
	if (path == NULL)
		path = cfg_env_get(envp, HW_CONFIG_ENV_FILE);
	if (path != NULL && path[0] != '\0' && hw_config_load_file(cfg, path, &why) != HW_OK)
		goto fail;
	if (hw_config_load_env(cfg, envp, &why) != HW_OK)
		goto fail;
	for (size_t i = 0; i < nsets; i++) {
		if (hw_config_set(cfg, sets[i], &why) != HW_OK)
			goto fail;
	}
	if (hw_config_validate(cfg, &why) != HW_OK)
		goto fail;
	if (print) {
		hw_config_dump(cfg, stdout);
		ret = 1;
	} else if (check) {
		printf("config ok\n");
		ret = 1;
	} else {
		ret = 0;
	}
	goto out;
fail:
	fprintf(stderr, "%s: config: %s\n", prog, why != NULL ? why : "out of memory");
	ret = 2;
out:
	free(why);
	free(sets);
	if (ret != 0)
		hw_config_fini(cfg);
	fflush(stdout);
	return ret;
}

void hw_cli_log_setup(const hw_config *cfg)
{
	hw_log_level level = HW_LOG_INFO;

	// The table accepts only the names hw_log_level_parse knows.
	(void)hw_log_level_parse(cfg->log.level, &level);
	hw_log_setup(level, cfg->node.id);
}
