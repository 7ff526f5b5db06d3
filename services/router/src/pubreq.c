// HTTP publish request bodies (pubreq.h).
//
// Design notes:
// - JSON is read with libyaml (JSON is YAML 1.2 flow style), as
//   router.pipelines is. Scalar styles tell JSON strings (quoted) from
//   numbers and booleans (plain), so "qos": "1" is refused like any JSON
//   type error would be.
// - Everything the Publish points to is a heap copy owned by the request,
//   so the parser's document (or the unpacked protobuf) is freed before
//   returning.

#include "pubreq.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "hawser/v1/messages.pb-c.h"
#include "mqtt/topic.h"

static hw_err rtr_pubreq_fail(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (why != NULL && cap > 0) {
		va_start(ap, fmt);
		vsnprintf(why, cap, fmt, ap);
		va_end(ap);
	}
	return HW_EINVAL;
}

static char *rtr_pubreq_strndup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d != NULL) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

// rtr_pubreq_b64 decodes standard base64 (padding optional, no blanks).
static bool rtr_pubreq_b64(const char *s, size_t n, uint8_t **out, size_t *outlen)
{
	uint8_t *d;
	size_t   o = 0;
	uint32_t acc = 0;
	int      bits = 0;

	while (n > 0 && s[n - 1] == '=')
		n--;
	if (n % 4 == 1)
		return false;
	if ((d = malloc(n * 3 / 4 + 1)) == NULL)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		int  v;

		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '+')
			v = 62;
		else if (c == '/')
			v = 63;
		else {
			free(d);
			return false;
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			d[o++] = (uint8_t)(acc >> bits);
		}
	}
	*out = d;
	*outlen = o;
	return true;
}

static bool rtr_pubreq_is_str(const yaml_node_t *n)
{
	return n != NULL && n->type == YAML_SCALAR_NODE &&
	    (n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE ||
	    n->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE);
}

static bool rtr_pubreq_plain(const yaml_node_t *n)
{
	return n != NULL && n->type == YAML_SCALAR_NODE &&
	    n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool rtr_pubreq_u32(const yaml_node_t *n, uint32_t *out)
{
	const char        *v;
	unsigned long long x = 0;

	if (!rtr_pubreq_plain(n))
		return false;
	v = (const char *)n->data.scalar.value;
	if (*v == '\0')
		return false;
	for (; *v != '\0'; v++) {
		if (*v < '0' || *v > '9')
			return false;
		x = x * 10 + (unsigned)(*v - '0');
		if (x > UINT32_MAX)
			return false;
	}
	*out = (uint32_t)x;
	return true;
}

// rtr_pubreq_props_alloc makes room for n user properties.
static hw_err rtr_pubreq_props_alloc(rtr_pubreq *r, size_t n)
{
	if (n == 0)
		return HW_OK;
	r->props = calloc(n, sizeof(*r->props));
	r->propv = calloc(n, sizeof(*r->propv));
	r->strs = calloc(2 * n, sizeof(*r->strs));
	if (r->props == NULL || r->propv == NULL || r->strs == NULL)
		return HW_ENOMEM;
	return HW_OK;
}

static hw_err rtr_pubreq_prop_add(rtr_pubreq *r, const char *k, size_t kn, const char *v,
    size_t vn)
{
	size_t i = r->nprops;

	if ((r->strs[2 * i] = rtr_pubreq_strndup(k, kn)) == NULL ||
	    (r->strs[2 * i + 1] = rtr_pubreq_strndup(v, vn)) == NULL)
		return HW_ENOMEM;
	hawser__internal__v1__user_property__init(&r->props[i]);
	r->props[i].key = r->strs[2 * i];
	r->props[i].value = r->strs[2 * i + 1];
	r->propv[i] = &r->props[i];
	r->nprops++;
	return HW_OK;
}

static hw_err rtr_pubreq_json_props(rtr_pubreq *r, yaml_document_t *doc, yaml_node_t *n,
    char *why, size_t cap)
{
	hw_err err;

	if (n->type == YAML_MAPPING_NODE) {
		size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);

		if ((err = rtr_pubreq_props_alloc(r, cnt)) != HW_OK)
			return err;
		for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
		    p++) {
			yaml_node_t *k = yaml_document_get_node(doc, p->key);
			yaml_node_t *v = yaml_document_get_node(doc, p->value);

			if (!rtr_pubreq_is_str(k) || !rtr_pubreq_is_str(v))
				return rtr_pubreq_fail(why, cap, "user_properties: names and values must be strings");
			if ((err = rtr_pubreq_prop_add(r, (const char *)k->data.scalar.value,
			    k->data.scalar.length, (const char *)v->data.scalar.value,
			    v->data.scalar.length)) != HW_OK)
				return err;
		}
		return HW_OK;
	}
	if (n->type == YAML_SEQUENCE_NODE) {
		size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);

		if ((err = rtr_pubreq_props_alloc(r, cnt)) != HW_OK)
			return err;
		for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
		    it++) {
			yaml_node_t *e = yaml_document_get_node(doc, *it);
			yaml_node_t *k = NULL, *v = NULL;

			if (e == NULL || e->type != YAML_MAPPING_NODE)
				return rtr_pubreq_fail(why, cap, "user_properties: each entry is {\"key\", \"value\"}");
			for (yaml_node_pair_t *p = e->data.mapping.pairs.start;
			    p < e->data.mapping.pairs.top; p++) {
				yaml_node_t *pk = yaml_document_get_node(doc, p->key);
				const char  *name = pk != NULL && pk->type == YAML_SCALAR_NODE ?
				    (const char *)pk->data.scalar.value : "";

				if (strcmp(name, "key") == 0)
					k = yaml_document_get_node(doc, p->value);
				else if (strcmp(name, "value") == 0)
					v = yaml_document_get_node(doc, p->value);
				else
					return rtr_pubreq_fail(why, cap, "user_properties: unknown field \"%s\"", name);
			}
			if (!rtr_pubreq_is_str(k) || !rtr_pubreq_is_str(v))
				return rtr_pubreq_fail(why, cap, "user_properties: key and value must be strings");
			if ((err = rtr_pubreq_prop_add(r, (const char *)k->data.scalar.value,
			    k->data.scalar.length, (const char *)v->data.scalar.value,
			    v->data.scalar.length)) != HW_OK)
				return err;
		}
		return HW_OK;
	}
	return rtr_pubreq_fail(why, cap, "user_properties must be an object or a list");
}

// rtr_pubreq_field reads one field of the JSON object into r.
static hw_err rtr_pubreq_field(rtr_pubreq *r, yaml_document_t *doc, const char *name,
    yaml_node_t *v, bool *have_payload, char *why, size_t cap)
{
	rtr_msg *m = &r->msg;
	uint32_t u;

	if (strcmp(name, "topic") == 0) {
		if (!rtr_pubreq_is_str(v))
			return rtr_pubreq_fail(why, cap, "topic must be a string");
		free(r->topic);
		if ((r->topic = rtr_pubreq_strndup((const char *)v->data.scalar.value,
		    v->data.scalar.length)) == NULL)
			return HW_ENOMEM;
		if (strlen(r->topic) != v->data.scalar.length)
			return rtr_pubreq_fail(why, cap, "topic must not contain U+0000");
	} else if (strcmp(name, "payload") == 0 || strcmp(name, "payload_base64") == 0) {
		if (*have_payload)
			return rtr_pubreq_fail(why, cap, "give payload or payload_base64, not both");
		if (!rtr_pubreq_is_str(v))
			return rtr_pubreq_fail(why, cap, "%s must be a string", name);
		*have_payload = true;
		if (name[7] == '\0') {
			r->payload_len = v->data.scalar.length;
			if ((r->payload = malloc(r->payload_len + 1)) == NULL)
				return HW_ENOMEM;
			memcpy(r->payload, v->data.scalar.value, r->payload_len);
		} else if (!rtr_pubreq_b64((const char *)v->data.scalar.value, v->data.scalar.length,
		    &r->payload, &r->payload_len)) {
			return rtr_pubreq_fail(why, cap, "payload_base64 is not valid base64");
		}
	} else if (strcmp(name, "qos") == 0) {
		if (!rtr_pubreq_u32(v, &u) || u > 2)
			return rtr_pubreq_fail(why, cap, "qos must be 0, 1 or 2");
		m->qos = u > 1 ? 1 : u;
	} else if (strcmp(name, "retain") == 0) {
		const char *b = rtr_pubreq_plain(v) ? (const char *)v->data.scalar.value : "";

		if (strcmp(b, "true") == 0)
			m->retain = true;
		else if (strcmp(b, "false") == 0)
			m->retain = false;
		else
			return rtr_pubreq_fail(why, cap, "retain must be true or false");
	} else if (strcmp(name, "message_expiry") == 0) {
		if (!rtr_pubreq_u32(v, &u))
			return rtr_pubreq_fail(why, cap, "message_expiry must be a number of seconds");
		m->has_expiry = u > 0;
		m->expiry_interval = u;
	} else if (strcmp(name, "content_type") == 0) {
		if (!rtr_pubreq_is_str(v))
			return rtr_pubreq_fail(why, cap, "content_type must be a string");
		free(r->content_type);
		if ((r->content_type = rtr_pubreq_strndup((const char *)v->data.scalar.value,
		    v->data.scalar.length)) == NULL)
			return HW_ENOMEM;
	} else if (strcmp(name, "user_properties") == 0) {
		if (r->nprops > 0 || r->props != NULL)
			return rtr_pubreq_fail(why, cap, "user_properties given twice");
		return rtr_pubreq_json_props(r, doc, v, why, cap);
	} else {
		return rtr_pubreq_fail(why, cap,
		    "unknown field \"%s\" (topic, payload, payload_base64, qos, retain, message_expiry, content_type, user_properties)",
		    name);
	}
	return HW_OK;
}

static hw_err rtr_pubreq_json(rtr_pubreq *r, const uint8_t *body, size_t len, char *why,
    size_t cap)
{
	yaml_parser_t   p;
	yaml_document_t doc;
	yaml_node_t    *root;
	bool            have_payload = false;
	hw_err          err = HW_OK;

	if (!yaml_parser_initialize(&p))
		return HW_ENOMEM;
	yaml_parser_set_input_string(&p, body, len);
	if (!yaml_parser_load(&p, &doc)) {
		yaml_parser_delete(&p);
		return rtr_pubreq_fail(why, cap, "the body is not valid JSON");
	}
	yaml_parser_delete(&p);
	if ((root = yaml_document_get_root_node(&doc)) == NULL || root->type != YAML_MAPPING_NODE) {
		err = rtr_pubreq_fail(why, cap, "the body must be a JSON object");
		goto out;
	}
	for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
	    pr++) {
		yaml_node_t *k = yaml_document_get_node(&doc, pr->key);
		yaml_node_t *v = yaml_document_get_node(&doc, pr->value);

		if (!rtr_pubreq_is_str(k) || v == NULL) {
			err = rtr_pubreq_fail(why, cap, "the body must be a JSON object");
			goto out;
		}
		if ((err = rtr_pubreq_field(r, &doc, (const char *)k->data.scalar.value, v,
		    &have_payload, why, cap)) != HW_OK)
			goto out;
	}
out:
	yaml_document_delete(&doc);
	return err;
}

static hw_err rtr_pubreq_proto(rtr_pubreq *r, const uint8_t *body, size_t len, char *why,
    size_t cap)
{
	Hawser__V1__DownstreamMessage *d = hawser__v1__downstream_message__unpack(NULL, len, body);
	hw_err                         err = HW_OK;

	if (d == NULL)
		return rtr_pubreq_fail(why, cap, "the body is not a hawser.v1.DownstreamMessage");
	if ((r->topic = strdup(d->topic != NULL ? d->topic : "")) == NULL ||
	    (r->payload = malloc(d->payload.len + 1)) == NULL ||
	    (d->content_type != NULL && d->content_type[0] != '\0' &&
	    (r->content_type = strdup(d->content_type)) == NULL) ||
	    rtr_pubreq_props_alloc(r, d->n_user_properties) != HW_OK) {
		err = HW_ENOMEM;
		goto out;
	}
	if (d->payload.len > 0)
		memcpy(r->payload, d->payload.data, d->payload.len);
	r->payload_len = d->payload.len;
	r->msg.qos = d->qos > 1 ? 1 : d->qos;
	r->msg.retain = d->retain;
	r->msg.has_expiry = d->expiry_interval > 0;
	r->msg.expiry_interval = d->expiry_interval;
	for (size_t i = 0; i < d->n_user_properties; i++) {
		const char *k = d->user_properties[i]->key, *v = d->user_properties[i]->value;

		if ((err = rtr_pubreq_prop_add(r, k, strlen(k), v, strlen(v))) != HW_OK)
			goto out;
	}
out:
	hawser__v1__downstream_message__free_unpacked(d, NULL);
	return err;
}

hw_err rtr_pubreq_parse(rtr_pubreq *out, const char *ctype, const uint8_t *body, size_t len,
    char *why, size_t whycap)
{
	hw_err err;

	memset(out, 0, sizeof(*out));
	hawser__internal__v1__publish__init(&out->msg);
	out->msg.qos = 1;
	if (why != NULL && whycap > 0)
		why[0] = '\0';
	if (ctype != NULL && strncasecmp(ctype, "application/x-protobuf", 22) == 0)
		err = rtr_pubreq_proto(out, body, len, why, whycap);
	else // application/json, but also what curl -d sends by default
		err = rtr_pubreq_json(out, body, len, why, whycap);
	if (err != HW_OK)
		return err;
	if (out->topic == NULL || !hw_topic_name_valid(hw_bytes_of_cstr(out->topic)))
		return rtr_pubreq_fail(why, whycap,
		    "topic must be a valid MQTT topic name (not empty, no + or #)");
	out->msg.topic = out->topic;
	out->msg.payload.data = out->payload;
	out->msg.payload.len = out->payload_len;
	if (out->content_type != NULL)
		out->msg.content_type = out->content_type;
	out->msg.n_user_properties = out->nprops;
	out->msg.user_properties = out->propv;
	return HW_OK;
}

void rtr_pubreq_fini(rtr_pubreq *r)
{
	if (r == NULL)
		return;
	free(r->topic);
	free(r->payload);
	free(r->content_type);
	if (r->strs != NULL)
		for (size_t i = 0; i < 2 * r->nprops; i++)
			free(r->strs[i]);
	free(r->strs);
	free(r->props);
	free(r->propv);
	memset(r, 0, sizeof(*r));
}
