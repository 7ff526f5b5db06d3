#ifndef RTR_KAFKA_PIPECONF_H
#define RTR_KAFKA_PIPECONF_H

#include <stddef.h>

#include "core/config.h"
#include "core/err.h"
#include "filter/filter.h"
#include "pipeline.h"

// The `router.pipelines` key, parsed and validated: an ordered list of
//   {name, filter, mode, topic, clean_topic, key}
// (config.c keeps the YAML subtree as JSON text; JSON is YAML, so libyaml
// reads it back). Per mode:
//   publish_only     filter, topic (client publishes are produced to it)
//   publish_consume  filter, topic (produced to, and consumed from)
//   consume_only     topic (consumed from); no filter (takes no publishes)
//   filtered         filter, topic (raw: produced to), clean_topic (consumed
//                    from; an external filter moves records raw -> clean,
//                    or the router itself with `builtin`)
//   direct           filter (matching publishes go direct; useful with
//                    router.direct false)
// key: "topic" (default: the MQTT topic, so one topic keeps its order),
// "client_id" (the publisher's), or "none".
// builtin (filtered only): a mapping {max_bytes, words_file, rate_per_s,
// burst} of non-negative integers (words_file a path; filter/filter.h); at
// least one check must be set. The router then consumes topic, filters and
// produces to clean_topic itself.

typedef enum rtr_pipeconf_key {
	RTR_KEY_TOPIC = 0,
	RTR_KEY_CLIENT_ID,
	RTR_KEY_NONE,
} rtr_pipeconf_key;

typedef struct rtr_pipeconf {
	char              *name;
	char              *filter;      // NULL for consume_only
	rtr_pipeline_mode  mode;
	char              *topic;       // NULL for direct
	char              *clean_topic; // filtered only
	rtr_pipeconf_key   key;
	bool               has_builtin; // filtered: the router filters itself
	rtr_filter_conf    builtin;
} rtr_pipeconf;

typedef struct rtr_pipeconf_list {
	rtr_pipeconf *v;
	size_t        n;
} rtr_pipeconf_list;

// rtr_pipeconf_parse parses json (a JSON array of pipeline objects; NULL or
// "" is the empty list) into *out. On HW_ECONFIG *why (heap, caller frees)
// names the pipeline (by name, or by position when it has none) and the
// field at fault. Pure; any thread.
hw_err rtr_pipeconf_parse(const char *json, rtr_pipeconf_list *out, char **why);

// rtr_pipeconf_props parses json (a JSON object of string/number/bool
// values; NULL or "" is empty) into a NULL-terminated array of alternating
// names and values (heap, free with rtr_pipeconf_props_free). HW_ECONFIG
// with *why when it is not such an object.
hw_err rtr_pipeconf_props(const char *json, char ***out, char **why);

// rtr_pipeconf_props_free frees what rtr_pipeconf_props made. NULL ok.
void rtr_pipeconf_props_free(char **props);

// rtr_pipeconf_fini frees the list. Safe on a zeroed list.
void rtr_pipeconf_fini(rtr_pipeconf_list *l);

#endif
