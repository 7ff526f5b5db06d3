// Application messages: one allocation holding the struct, the user
// property array and every byte string, each followed by a NUL.
#include <stdlib.h>
#include <string.h>

#include "msg.h"

typedef struct brk_msg_src {
	uint8_t  qos;
	bool     retain;
	hw_bytes topic, payload, client_id, user_id, edge;
	hw_bytes content_type, response_topic, correlation_data;
	bool     has_format;
	uint8_t  format;
	bool     has_expiry;
	uint32_t expiry;
	uint32_t nuser;
	// user properties come from decoded props, a protobuf or another message
	const hw_mqtt_props *user_props;
	Hawser__Internal__V1__UserProperty *const *user_pb;
	const hw_mqtt_user_prop *user_arr;
} brk_msg_src;

static size_t brk_msg_user_bytes(const brk_msg_src *s)
{
	size_t n = 0;

	if (s->user_props != NULL) {
		hw_mqtt_user_iter it;
		hw_mqtt_user_prop up;

		hw_mqtt_user_iter_init(&it, s->user_props);
		while (hw_mqtt_user_next(&it, &up))
			n += up.key.len + up.value.len + 2;
	} else if (s->user_arr != NULL) {
		for (uint32_t i = 0; i < s->nuser; i++)
			n += s->user_arr[i].key.len + s->user_arr[i].value.len + 2;
	} else {
		for (uint32_t i = 0; i < s->nuser; i++)
			n += strlen(s->user_pb[i]->key) + strlen(s->user_pb[i]->value) + 2;
	}
	return n;
}

static hw_bytes brk_msg_put(uint8_t **p, hw_bytes b)
{
	hw_bytes out = { *p, b.len };

	if (b.len != 0)
		memcpy(*p, b.ptr, b.len);
	(*p)[b.len] = 0;
	*p += b.len + 1;
	return out;
}

static void brk_msg_copy_users(brk_msg *m, const brk_msg_src *s, hw_mqtt_user_prop *u, uint8_t **p)
{
	uint32_t i = 0;

	if (s->user_props != NULL) {
		hw_mqtt_user_iter it;
		hw_mqtt_user_prop up;

		hw_mqtt_user_iter_init(&it, s->user_props);
		while (i < s->nuser && hw_mqtt_user_next(&it, &up)) {
			u[i].key = brk_msg_put(p, up.key);
			u[i].value = brk_msg_put(p, up.value);
			i++;
		}
	} else if (s->user_arr != NULL) {
		for (; i < s->nuser; i++) {
			u[i].key = brk_msg_put(p, s->user_arr[i].key);
			u[i].value = brk_msg_put(p, s->user_arr[i].value);
		}
	} else {
		for (; i < s->nuser; i++) {
			u[i].key = brk_msg_put(p, hw_bytes_of_cstr(s->user_pb[i]->key));
			u[i].value = brk_msg_put(p, hw_bytes_of_cstr(s->user_pb[i]->value));
		}
	}
	m->props.user = u;
	m->props.user_count = i;
	if (i != 0)
		hw_mqtt_set(&m->props, HW_PROP_USER_PROPERTY);
}

static hw_err brk_msg_build(brk_msg **out, const brk_msg_src *s, uint64_t now_ms)
{
	size_t strs = s->topic.len + s->payload.len + s->client_id.len + s->user_id.len +
	    s->edge.len + s->content_type.len + s->response_topic.len + s->correlation_data.len +
	    8 + brk_msg_user_bytes(s);
	size_t head = sizeof(brk_msg) + s->nuser * sizeof(hw_mqtt_user_prop);
	brk_msg *m = calloc(1, head + strs);
	uint8_t *p;

	if (m == NULL)
		return HW_ENOMEM;
	p = (uint8_t *)m + head;
	atomic_init(&m->refs, 1);
	m->qos = s->qos;
	m->retain = s->retain;
	m->topic = brk_msg_put(&p, s->topic);
	m->payload = brk_msg_put(&p, s->payload);
	m->client_id = brk_msg_put(&p, s->client_id);
	m->user_id = brk_msg_put(&p, s->user_id);
	m->edge = brk_msg_put(&p, s->edge);
	m->props.content_type = brk_msg_put(&p, s->content_type);
	m->props.response_topic = brk_msg_put(&p, s->response_topic);
	m->props.correlation_data = brk_msg_put(&p, s->correlation_data);
	if (s->content_type.len != 0)
		hw_mqtt_set(&m->props, HW_PROP_CONTENT_TYPE);
	if (s->response_topic.len != 0)
		hw_mqtt_set(&m->props, HW_PROP_RESPONSE_TOPIC);
	if (s->correlation_data.len != 0)
		hw_mqtt_set(&m->props, HW_PROP_CORRELATION_DATA);
	if (s->has_format) {
		m->props.payload_format = s->format;
		hw_mqtt_set(&m->props, HW_PROP_PAYLOAD_FORMAT);
	}
	brk_msg_copy_users(m, s, (hw_mqtt_user_prop *)(m + 1), &p);
	m->has_expiry = s->has_expiry;
	m->expire_at_ms = now_ms + (uint64_t)s->expiry * 1000;
	m->size = head + strs;
	*out = m;
	return HW_OK;
}

static void brk_msg_src_props(brk_msg_src *s, const hw_mqtt_props *pr)
{
	if (hw_mqtt_has(pr, HW_PROP_CONTENT_TYPE))
		s->content_type = pr->content_type;
	if (hw_mqtt_has(pr, HW_PROP_RESPONSE_TOPIC))
		s->response_topic = pr->response_topic;
	if (hw_mqtt_has(pr, HW_PROP_CORRELATION_DATA))
		s->correlation_data = pr->correlation_data;
	s->has_format = hw_mqtt_has(pr, HW_PROP_PAYLOAD_FORMAT);
	s->format = pr->payload_format;
	s->has_expiry = hw_mqtt_has(pr, HW_PROP_MESSAGE_EXPIRY);
	s->expiry = pr->message_expiry;
	s->user_props = pr;
	s->nuser = pr->user_count;
}

hw_err brk_msg_from_publish(brk_msg **out, const hw_mqtt_publish *p, hw_bytes topic,
    const brk_msg_origin *from, uint64_t now_ms)
{
	brk_msg_src s = { .qos = p->qos, .retain = p->retain, .topic = topic,
		.payload = p->payload, .client_id = from->client_id, .user_id = from->user_id,
		.edge = from->edge };

	brk_msg_src_props(&s, &p->props);
	return brk_msg_build(out, &s, now_ms);
}

hw_err brk_msg_from_will(brk_msg **out, const hw_mqtt_connect *c, hw_bytes client_id,
    uint64_t now_ms)
{
	brk_msg_src s = { .qos = c->will_qos, .retain = c->will_retain, .topic = c->will_topic,
		.payload = c->will_payload, .client_id = client_id };

	brk_msg_src_props(&s, &c->will_props);
	return brk_msg_build(out, &s, now_ms);
}

hw_err brk_msg_set_origin(brk_msg **m, const brk_msg_origin *from)
{
	const brk_msg *old = *m;
	brk_msg_src s = { .client_id = from->client_id, .user_id = from->user_id,
		.edge = from->edge };
	brk_msg *n;
	hw_err err;

	if (old == NULL)
		return HW_OK;
	s.qos = old->qos;
	s.retain = old->retain;
	s.topic = old->topic;
	s.payload = old->payload;
	brk_msg_src_props(&s, &old->props);
	// A built message keeps its user properties as an array, not raw bytes.
	s.user_props = NULL;
	s.user_arr = old->props.user;
	s.nuser = old->props.user_count;
	if ((err = brk_msg_build(&n, &s, 0)) != HW_OK)
		return err;
	// The copy keeps the old message's deadline rather than restarting it.
	n->has_expiry = old->has_expiry;
	n->will_delay = old->will_delay;
	n->expire_at_ms = old->expire_at_ms;
	n->received_at_us = old->received_at_us;
	brk_msg_unref(*m);
	*m = n;
	return HW_OK;
}

hw_err brk_msg_from_pb(brk_msg **out, const brk_publish_pb *p, uint64_t now_ms)
{
	brk_msg_src s = {
		.qos = p->qos > 2 ? 2 : (uint8_t)p->qos,
		.retain = p->retain,
		.topic = hw_bytes_of_cstr(p->topic),
		.payload = { p->payload.data, p->payload.len },
		.client_id = hw_bytes_of_cstr(p->client_id),
		.content_type = hw_bytes_of_cstr(p->content_type),
		.response_topic = hw_bytes_of_cstr(p->response_topic),
		.correlation_data = { p->correlation_data.data, p->correlation_data.len },
		.has_format = p->has_payload_format,
		.format = (uint8_t)p->payload_format,
		.has_expiry = p->has_expiry,
		.expiry = p->expiry_interval,
		.nuser = (uint32_t)p->n_user_properties,
		.user_pb = p->user_properties,
	};
	hw_err err = brk_msg_build(out, &s, now_ms);

	if (err == HW_OK)
		(*out)->received_at_us = p->received_at_us;
	return err;
}

void brk_msg_to_pb(const brk_msg *m, brk_publish_pb *pb,
    Hawser__Internal__V1__UserProperty *users, Hawser__Internal__V1__UserProperty **userp)
{
	pb->topic = (char *)m->topic.ptr;
	pb->payload.data = (uint8_t *)m->payload.ptr;
	pb->payload.len = m->payload.len;
	pb->qos = m->qos;
	pb->retain = m->retain;
	pb->has_payload_format = hw_mqtt_has(&m->props, HW_PROP_PAYLOAD_FORMAT);
	pb->payload_format = m->props.payload_format;
	pb->has_expiry = m->has_expiry;
	pb->content_type = (char *)m->props.content_type.ptr;
	pb->response_topic = (char *)m->props.response_topic.ptr;
	pb->correlation_data.data = (uint8_t *)m->props.correlation_data.ptr;
	pb->correlation_data.len = m->props.correlation_data.len;
	pb->client_id = (char *)m->client_id.ptr;
	pb->user_id = (char *)m->user_id.ptr;
	pb->edge = (char *)m->edge.ptr;
	pb->received_at_us = m->received_at_us;
	for (uint32_t i = 0; i < m->props.user_count; i++) {
		Hawser__Internal__V1__UserProperty init = HAWSER__INTERNAL__V1__USER_PROPERTY__INIT;

		users[i] = init;
		users[i].key = (char *)m->props.user[i].key.ptr;
		users[i].value = (char *)m->props.user[i].value.ptr;
		userp[i] = &users[i];
	}
	pb->n_user_properties = m->props.user_count;
	pb->user_properties = m->props.user_count ? userp : NULL;
}

brk_msg *brk_msg_ref(brk_msg *m)
{
	atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
	return m;
}

void brk_msg_unref(brk_msg *m)
{
	if (m != NULL && atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) == 1)
		free(m);
}

bool brk_msg_expiry_left(const brk_msg *m, uint64_t now_ms, uint32_t *left)
{
	if (!m->has_expiry)
		return true;
	if (now_ms >= m->expire_at_ms)
		return false;
	*left = (uint32_t)((m->expire_at_ms - now_ms + 999) / 1000);
	return true;
}
