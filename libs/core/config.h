#ifndef HW_CORE_CONFIG_H
#define HW_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

// Configuration of every tier, in one struct: each binary loads the whole
// table (the all-in-one runs all tiers) and reads its own sections.
//
// Keys are dotted ("edge.mqtt_listen"); each has a type, bounds, a default,
// and an environment variable derived from the key (HAWSER_EDGE_MQTT_LISTEN).
// Precedence: built-in default < YAML file < environment < --set flags.
// A bad value stops startup with a message that names the key.
//
// Strings are heap copies owned by the config; lists are NULL-terminated
// arrays of strings (YAML sequence, or comma-separated in env and --set).

typedef struct hw_config {
	struct {
		char *id;          // node.id: this process's name; default hostname-pid
	} node;
	struct {
		char *level;       // log.level: debug|info|warn|error
	} log;
	struct {
		char    *mqtt_listen;    // "0.0.0.0:1883"; "" disables
		char    *mqtts_listen;   // "" (TLS over TCP; needs tls_cert)
		char    *ws_listen;      // "0.0.0.0:8083"
		char    *wss_listen;     // ""
		char    *http_listen;    // "0.0.0.0:9100": /metrics /healthz /readyz
		char    *tls_cert;       // PEM file
		char    *tls_key;        // PEM file
		char    *tls_ca;         // PEM file; client certificates not required
		char    *listen;         // NNG inbox "tcp://0.0.0.0:7300"
		char    *advertise;      // inbox URL brokers dial back; "" = derived
		char   **brokers;        // broker inbox URLs
		uint32_t max_packet_size;     // bytes, 1..268435455
		uint32_t max_connections;
		uint32_t write_queue_bytes;   // per-connection hard limit
		uint32_t ws_rx_buffer;        // bytes lws keeps per WebSocket for frames
		uint32_t connect_timeout_ms;  // CONNECT must arrive within this
		uint32_t drain_rate;          // closes per second on SIGTERM
		uint32_t drain_timeout_ms;
		char    *server_reference;    // MQTT 5 0x9C target when draining
		bool     demo_page;           // serve the demo page at / (all-in-one)
	} edge;
	struct {
		char    *listen;         // NNG inbox "tcp://0.0.0.0:7100"
		char    *advertise;      // "" = derived
		char   **routers;        // router inbox URLs
		char   **peers;          // the broker tier (same list as edge.brokers)
		char    *http_listen;    // "0.0.0.0:9101"
		uint32_t workers;        // 0 = one per CPU
		uint32_t receive_maximum;     // window for clients that name none
		uint32_t max_inflight;        // cap on any client's Receive Maximum
		uint32_t max_queued_messages; // per session, offline or window full
		uint32_t max_queued_bytes;
		uint32_t topic_alias_maximum; // aliases we accept from a client
		uint32_t max_session_expiry;  // seconds
		uint32_t max_keepalive;       // seconds; 0 = client's choice
		bool     retain_available;
		bool     allow_anonymous;
	} broker;
	struct {
		char   **brokers;        // broker inbox URLs the router offers to
		char    *listen;         // NNG inbox "tcp://0.0.0.0:7200"
		char    *advertise;
		char    *http_listen;    // "0.0.0.0:9102"
		char    *mode;           // "direct" (no Kafka) | "kafka"
		char    *pipelines;      // JSON array of pipeline objects; "" = none
		bool     direct;         // unmatched topics go direct (else refused)
		char    *publish_token;       // HTTP publish API bearer token; "" = off
		uint32_t publish_max_bytes;   // HTTP publish body limit
		uint32_t publish_timeout_ms;  // HTTP publish: brokers must take it within
		struct {
			char    *brokers;            // bootstrap servers
			char    *group;              // consumer group id
			uint32_t message_timeout_ms; // produce bound
			char    *properties;         // JSON object of librdkafka props; ""
			char    *events_topic;       // client lifecycle events; "" = off
			uint32_t lag_interval_ms;    // consumer lag gauge refresh
		} kafka;
	} router;
	struct {
		// Authentication chain and ACL (services/broker/auth). Scalars
		// are ordinary keys; `rules` and `callbacks` are structured: the
		// YAML subtree is kept as JSON text (env/--set take JSON text)
		// and parsed and validated by the broker's auth module.
		char   **chain;          // auth.chain: jwt|http|file|anonymous, in order
		char    *acl_default;    // "allow" | "deny"
		char    *rules;          // JSON array of rule objects; "" = none
		char    *callbacks;      // JSON object name -> callback settings; ""
		char    *listener_chains;// JSON object listener -> [methods]; ""
		struct {
			char    *alg;          // HS256 | RS256 | ES256
			char    *key;          // secret (HS256) or PEM public key, inline
			char    *key_file;     // or from a file
			char    *token_field;  // "password" | "username"
			uint32_t leeway_s;     // exp/nbf tolerance
			char    *user_claim;   // claim naming the user ("sub")
			char    *acl_claim;    // claim carrying per-client rules; ""
			char   **attr_claims;  // claims usable as %{name} in rules
		} jwt;
		struct {
			char    *url;          // CONNECT callback; "" = none
			uint32_t timeout_ms;
			uint32_t retries;
			uint32_t cache_ttl_ms; // 0 = no cache
			char    *on_error;     // deny | allow | ignore (service down)
		} http;
		struct {
			char    *path;         // password file (PBKDF2-HMAC-SHA256)
		} file;
	} auth;
	struct {
		uint32_t member_down_ms; // a broker unreachable this long leaves the set
		uint32_t dns_refresh_ms; // dns:// entries re-resolved this often
	} cluster;
	struct {
		char *backend;           // "memory" | "redis"
		char *redis_url;         // "redis://[:password@]host:port/db"
		uint32_t redis_timeout_ms; // connect and reply timeout of one attempt
		char *key_prefix;        // prepended to every Redis key (no braces)
	} store;
} hw_config;

// hw_config_init fills cfg with the built-in defaults.
hw_err hw_config_init(hw_config *cfg);

// hw_config_load_file applies a YAML file on top of cfg. The file maps
// sections to keys (edge: {mqtt_listen: ...}). Unknown keys are errors.
// On error, *why (heap string, caller frees) names the key or the line.
hw_err hw_config_load_file(hw_config *cfg, const char *path, char **why);

// hw_config_load_env applies every HAWSER_* variable found in envp
// (NULL-terminated "K=V" strings, as environ). Unknown HAWSER_ names are
// errors, so a typo never passes silently.
hw_err hw_config_load_env(hw_config *cfg, char *const *envp, char **why);

// hw_config_set applies one "key=value" assignment (as from --set).
hw_err hw_config_set(hw_config *cfg, const char *assignment, char **why);

// hw_config_validate checks cross-key rules (TLS listener without a cert,
// empty broker list...) after all sources are applied.
hw_err hw_config_validate(const hw_config *cfg, char **why);

// hw_config_dump writes the effective configuration as YAML to fp.
void hw_config_dump(const hw_config *cfg, FILE *fp);

// hw_config_fini frees everything cfg owns.
void hw_config_fini(hw_config *cfg);

// hw_cli is the shared command line of every binary:
//   -c/--config FILE, --set key=value (repeatable), --check-config,
//   --print-config, -h/--help, -V/--version.
// hw_cli_load builds cfg from the built-in defaults, then `defaults` (a
// NULL-terminated list of "key=value" the binary prefers, e.g. inproc URLs
// for the all-in-one; may be NULL), then the file, the environment and the
// flags, in that order, and validates it. It prints help/version/errors
// itself and returns:
//   0  continue and run,  1  exit with status 0 (help, version, check ok),
//   2  exit with status 2 (usage or config error, message already printed).
//
// The file comes from -c/--config, or else from the HAWSER_CONFIG
// environment variable. HAWSER_CONFIG and the repository's tooling variables
// (HAWSER_BIN, HAWSER_BIN_DIR, HAWSER_TEST_TARGET, HAWSER_PYTHON) are the
// only HAWSER_* variables that are not keys; any other is an error.
// --config-reference prints a Markdown reference of every key (the source of
// docs/config.md) and returns 1. On a non-zero return cfg owns nothing
// (hw_config_fini was called; calling it again is harmless).
int hw_cli_load(hw_config *cfg, int argc, char **argv, char *const *envp,
    const char *prog, const char *summary, const char *const *defaults);

// hw_cli_log_setup points the log sink at cfg's log.level and node.id.
// cfg must have come from hw_cli_load (which already refused an unknown
// level). Call once, before any thread starts (hw_log_setup's rule).
void hw_cli_log_setup(const hw_config *cfg);

// HW_CONFIG_ENV_FILE names the environment variable holding the config file
// path when no -c/--config is given.
#define HW_CONFIG_ENV_FILE "HAWSER_CONFIG"

// hw_config_split_host_port splits a listener address "host:port" (IPv6 as
// "[::1]:port"; brackets are removed) into host (NUL-terminated, at most
// cap-1 bytes) and port (0..65535). An empty host is refused. HW_EINVAL when
// s does not have that shape or host does not fit. Pure; any thread.
hw_err hw_config_split_host_port(const char *s, char *host, size_t cap, int *port);

// hw_config_reference writes a Markdown table of every key (type, bounds,
// default, environment variable, description) to fp.
void hw_config_reference(FILE *fp);

#endif
