// router.pipelines and router.kafka.properties parsing (pipeconf.h).
//
// Design notes:
// - config.c hands the YAML subtree over as JSON text; JSON is a subset of
//   YAML 1.2 flow style, so libyaml parses it back into a document and the
//   walk below reads mappings and scalars from it.
// - Every error names the pipeline ("router.pipelines[2] (chat): ...") so
//   an operator finds the row at once.

#include "kafka/pipeconf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/buf.h"
#include "mqtt/topic.h"

static hw_err pc_fail(char **why, const char *fmt, ...)
{
	va_list ap;
	char    tmp[512];

	va_start(ap, fmt);
	vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (why != NULL)
		*why = strdup(tmp);
	return HW_ECONFIG;
}

static bool pc_empty(const char *json)
{
	if (json == NULL)
		return true;
	while (*json == ' ' || *json == '\t' || *json == '\n' || *json == '\r')
		json++;
	return *json == '\0';
}

// pc_load parses json into doc and returns its root node (NULL on a parse
// error; doc is then uninitialised).
static yaml_node_t *pc_load(yaml_document_t *doc, const char *json)
{
	yaml_parser_t p;
	yaml_node_t  *root;

	if (!yaml_parser_initialize(&p))
		return NULL;
	yaml_parser_set_input_string(&p, (const unsigned char *)json, strlen(json));
	if (!yaml_parser_load(&p, doc)) {
		yaml_parser_delete(&p);
		return NULL;
	}
	yaml_parser_delete(&p);
	if ((root = yaml_document_get_root_node(doc)) == NULL)
		yaml_document_delete(doc);
	return root;
}

static const char *pc_scalar(yaml_node_t *n)
{
	return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

// pc_u32 parses a non-negative decimal integer below 2^32.
static bool pc_u32(const char *v, uint32_t *out)
{
	unsigned long long n = 0;

	if (v == NULL || *v == '\0')
		return false;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return false;
		n = n * 10 + (unsigned)(*v - '0');
		if (n > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)n;
	return true;
}

// pc_builtin reads a filtered pipeline's `builtin` mapping.
static hw_err pc_builtin(yaml_document_t *doc, yaml_node_t *m, const char *where,
    rtr_pipeconf *pc, char **why)
{
	rtr_filter_conf *c = &pc->builtin;

	if (m == NULL || m->type != YAML_MAPPING_NODE)
		return pc_fail(why, "%s: builtin must be a mapping {max_bytes, words_file, rate_per_s, burst}",
		    where);
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		const char *k = pc_scalar(yaml_document_get_node(doc, p->key));
		const char *v = pc_scalar(yaml_document_get_node(doc, p->value));
		uint32_t   *dst = NULL;

		if (k == NULL || v == NULL)
			return pc_fail(why, "%s: builtin: values must be scalars", where);
		if (strcmp(k, "words_file") == 0) {
			free(c->words_file);
			if ((c->words_file = strdup(v)) == NULL)
				return HW_ENOMEM;
			continue;
		}
		if (strcmp(k, "max_bytes") == 0)
			dst = &c->max_bytes;
		else if (strcmp(k, "rate_per_s") == 0)
			dst = &c->rate_per_s;
		else if (strcmp(k, "burst") == 0)
			dst = &c->burst;
		else
			return pc_fail(why, "%s: builtin: unknown field \"%s\" (max_bytes, words_file, rate_per_s, burst)",
			    where, k);
		if (!pc_u32(v, dst))
			return pc_fail(why, "%s: builtin: %s must be a non-negative integer", where, k);
	}
	if (c->max_bytes == 0 && (c->words_file == NULL || c->words_file[0] == '\0') &&
	    c->rate_per_s == 0)
		return pc_fail(why, "%s: builtin: set at least one of max_bytes, words_file, rate_per_s",
		    where);
	if (c->burst > 0 && c->rate_per_s == 0)
		return pc_fail(why, "%s: builtin: burst needs rate_per_s", where);
	pc->has_builtin = true;
	return HW_OK;
}

static hw_err pc_row(yaml_document_t *doc, yaml_node_t *m, size_t idx, rtr_pipeconf *pc,
    char **why)
{
	yaml_node_t *builtin = NULL;
	const char *mode = NULL, *key = NULL;
	char        where[96];

	snprintf(where, sizeof(where), "router.pipelines[%zu]", idx);
	if (m->type != YAML_MAPPING_NODE)
		return pc_fail(why, "%s: each pipeline is a mapping {name, filter, mode, topic}", where);
	for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
		const char *k = pc_scalar(yaml_document_get_node(doc, p->key));
		const char *v = pc_scalar(yaml_document_get_node(doc, p->value));
		char      **dst = NULL;

		if (k == NULL)
			return pc_fail(why, "%s: keys must be names", where);
		if (strcmp(k, "builtin") == 0) {
			builtin = yaml_document_get_node(doc, p->value);
			continue;
		}
		if (v == NULL)
			return pc_fail(why, "%s: %s must be a string", where, k);
		if (strcmp(k, "name") == 0)
			dst = &pc->name;
		else if (strcmp(k, "filter") == 0)
			dst = &pc->filter;
		else if (strcmp(k, "topic") == 0)
			dst = &pc->topic;
		else if (strcmp(k, "clean_topic") == 0)
			dst = &pc->clean_topic;
		else if (strcmp(k, "mode") == 0)
			mode = v;
		else if (strcmp(k, "key") == 0)
			key = v;
		else
			return pc_fail(why, "%s: unknown field \"%s\" (name, filter, mode, topic, clean_topic, key, builtin)",
			    where, k);
		if (dst != NULL) {
			free(*dst);
			if ((*dst = strdup(v)) == NULL)
				return HW_ENOMEM;
		}
	}
	if (pc->name == NULL || pc->name[0] == '\0')
		return pc_fail(why, "%s: name is required", where);
	snprintf(where, sizeof(where), "router.pipelines[%zu] (%s)", idx, pc->name);
	if (mode == NULL)
		return pc_fail(why, "%s: mode is required (publish_only, publish_consume, consume_only, filtered, direct)",
		    where);
	if (rtr_pipeline_mode_parse(mode, &pc->mode) != HW_OK)
		return pc_fail(why, "%s: mode \"%s\" is not publish_only, publish_consume, consume_only, filtered or direct",
		    where, mode);
	if (key == NULL || strcmp(key, "topic") == 0)
		pc->key = RTR_KEY_TOPIC;
	else if (strcmp(key, "client_id") == 0)
		pc->key = RTR_KEY_CLIENT_ID;
	else if (strcmp(key, "none") == 0)
		pc->key = RTR_KEY_NONE;
	else
		return pc_fail(why, "%s: key \"%s\" is not topic, client_id or none", where, key);
	if (pc->mode == RTR_MODE_CONSUME_ONLY) {
		if (pc->filter != NULL)
			return pc_fail(why, "%s: consume_only takes no client publishes, so no filter", where);
	} else {
		if (pc->filter == NULL || !hw_topic_filter_valid(hw_bytes_of_cstr(pc->filter)))
			return pc_fail(why, "%s: filter must be a valid MQTT topic filter", where);
	}
	if (pc->mode == RTR_MODE_DIRECT) {
		if (pc->topic != NULL || pc->clean_topic != NULL)
			return pc_fail(why, "%s: direct uses no Kafka topic", where);
		if (builtin != NULL)
			return pc_fail(why, "%s: builtin is for filtered pipelines only", where);
		return HW_OK;
	}
	if (pc->topic == NULL || pc->topic[0] == '\0')
		return pc_fail(why, "%s: topic (the Kafka topic) is required", where);
	if (pc->mode == RTR_MODE_FILTERED) {
		if (pc->clean_topic == NULL || pc->clean_topic[0] == '\0')
			return pc_fail(why, "%s: filtered needs clean_topic (the Kafka topic the filter writes)",
			    where);
		if (strcmp(pc->clean_topic, pc->topic) == 0)
			return pc_fail(why, "%s: clean_topic must differ from topic", where);
		if (builtin != NULL)
			return pc_builtin(doc, builtin, where, pc, why);
	} else if (pc->clean_topic != NULL) {
		return pc_fail(why, "%s: clean_topic is for filtered pipelines only", where);
	}
	if (builtin != NULL)
		return pc_fail(why, "%s: builtin is for filtered pipelines only", where);
	return HW_OK;
}

hw_err rtr_pipeconf_parse(const char *json, rtr_pipeconf_list *out, char **why)
{
	yaml_document_t doc;
	yaml_node_t    *root;
	hw_err          err = HW_OK;
	size_t          n;

	memset(out, 0, sizeof(*out));
	if (pc_empty(json))
		return HW_OK;
	if ((root = pc_load(&doc, json)) == NULL)
		return pc_fail(why, "router.pipelines: not a valid list");
	if (root->type != YAML_SEQUENCE_NODE) {
		err = pc_fail(why, "router.pipelines: must be a list of pipelines");
		goto out;
	}
	n = (size_t)(root->data.sequence.items.top - root->data.sequence.items.start);
	if (n == 0)
		goto out;
	if ((out->v = calloc(n, sizeof(*out->v))) == NULL) {
		err = HW_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_t *m = yaml_document_get_node(&doc, root->data.sequence.items.start[i]);

		out->n = i + 1;
		if ((err = pc_row(&doc, m, i, &out->v[i], why)) != HW_OK)
			goto out;
		for (size_t j = 0; j < i; j++)
			if (strcmp(out->v[j].name, out->v[i].name) == 0) {
				err = pc_fail(why, "router.pipelines[%zu] (%s): the name is used twice", i,
				    out->v[i].name);
				goto out;
			}
	}
out:
	yaml_document_delete(&doc);
	if (err != HW_OK)
		rtr_pipeconf_fini(out);
	return err;
}

hw_err rtr_pipeconf_props(const char *json, char ***out, char **why)
{
	yaml_document_t doc;
	yaml_node_t    *root;
	char          **v = NULL;
	size_t          n = 0;
	hw_err          err = HW_OK;

	*out = NULL;
	if (pc_empty(json)) {
		if ((*out = calloc(1, sizeof(char *))) == NULL)
			return HW_ENOMEM;
		return HW_OK;
	}
	if ((root = pc_load(&doc, json)) == NULL)
		return pc_fail(why, "router.kafka.properties: not a valid mapping");
	if (root->type != YAML_MAPPING_NODE) {
		err = pc_fail(why, "router.kafka.properties: must be a mapping name -> value");
		goto out;
	}
	n = (size_t)(root->data.mapping.pairs.top - root->data.mapping.pairs.start);
	if ((v = calloc(2 * n + 1, sizeof(char *))) == NULL) {
		err = HW_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		yaml_node_pair_t *p = &root->data.mapping.pairs.start[i];
		const char       *k = pc_scalar(yaml_document_get_node(&doc, p->key));
		const char       *val = pc_scalar(yaml_document_get_node(&doc, p->value));

		if (k == NULL || val == NULL) {
			err = pc_fail(why, "router.kafka.properties: values must be scalars");
			goto out;
		}
		if ((v[2 * i] = strdup(k)) == NULL || (v[2 * i + 1] = strdup(val)) == NULL) {
			err = HW_ENOMEM;
			goto out;
		}
	}
	*out = v;
	v = NULL;
out:
	rtr_pipeconf_props_free(v);
	yaml_document_delete(&doc);
	return err;
}

void rtr_pipeconf_props_free(char **props)
{
	if (props == NULL)
		return;
	for (size_t i = 0; props[i] != NULL; i++)
		free(props[i]);
	free(props);
}

void rtr_pipeconf_fini(rtr_pipeconf_list *l)
{
	if (l == NULL)
		return;
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].filter);
		free(l->v[i].topic);
		free(l->v[i].clean_topic);
		rtr_filter_conf_fini(&l->v[i].builtin);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}
