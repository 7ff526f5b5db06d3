// Sessions: window and queue policy (see session.h), subscriptions,
// incoming QoS 2 ids and topic aliases.
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "core/slot.h"
#include "session.h"
#include "set.h"

hw_err brk_session_alloc(brk_session **out, hw_bytes client_id)
{
	brk_session *s;

	if (client_id.len > UINT16_MAX)
		return HW_EINVAL;
	if ((s = calloc(1, offsetof(brk_session, client_id) + client_id.len + 1)) == NULL)
		return HW_ENOMEM;
	if (client_id.len)
		memcpy(s->client_id, client_id.ptr, client_id.len);
	s->client_id_len = (uint16_t)client_id.len;
	s->slot = (uint16_t)hw_slot_of(client_id);
	s->window = 1;
	s->next_pid = 1;
	s->next_seq = 1;
	*out = s;
	return HW_OK;
}

static void brk_deliv_list_free(brk_deliv *d)
{
	while (d != NULL) {
		brk_deliv *next = d->next;

		brk_deliv_free(d);
		d = next;
	}
}

void brk_session_free(brk_session *s)
{
	if (s == NULL)
		return;
	brk_deliv_list_free(s->fly_head);
	brk_deliv_list_free(s->q_head);
	brk_msg_unref(s->will);
	free(s->subs);
	free(s->in2);
	brk_session_alias_reset(s, 0);
	free(s);
}

brk_deliv *brk_deliv_alloc(brk_msg *msg, uint8_t qos, bool retain, const uint32_t *sub_ids,
    uint32_t nsub)
{
	brk_deliv *d = malloc(sizeof(*d) + nsub * sizeof(uint32_t));

	if (d == NULL)
		return NULL;
	d->next = NULL;
	d->msg = brk_msg_ref(msg);
	d->pid = 0;
	d->qos = qos;
	d->retain = retain;
	d->pubrec = false;
	d->seq = 0;
	d->nsub = nsub;
	if (nsub)
		memcpy(d->sub_ids, sub_ids, nsub * sizeof(uint32_t));
	return d;
}

void brk_deliv_free(brk_deliv *d)
{
	if (d == NULL)
		return;
	brk_msg_unref(d->msg);
	free(d);
}

static bool brk_session_pid_used(const brk_session *s, uint16_t pid)
{
	for (const brk_deliv *d = s->fly_head; d != NULL; d = d->next)
		if (d->pid == pid)
			return true;
	return false;
}

// brk_session_fly appends d to the in-flight list with a fresh packet id.
// The window is at most 65535, so a free id always exists.
static void brk_session_fly(brk_session *s, brk_deliv *d)
{
	uint16_t pid = s->next_pid;

	while (pid == 0 || brk_session_pid_used(s, pid))
		pid++;
	d->pid = pid;
	s->next_pid = (uint16_t)(pid + 1);
	d->next = NULL;
	if (s->fly_tail != NULL)
		s->fly_tail->next = d;
	else
		s->fly_head = d;
	s->fly_tail = d;
	s->nfly++;
}

static brk_deliv *brk_session_q_pop(brk_session *s)
{
	brk_deliv *d = s->q_head;

	if (d == NULL)
		return NULL;
	s->q_head = d->next;
	if (s->q_head == NULL)
		s->q_tail = NULL;
	s->nq--;
	s->q_bytes -= d->msg->size;
	d->next = NULL;
	return d;
}

static bool brk_session_q_over(const brk_session *s, const brk_deliv *d)
{
	return s->nq + 1 > s->max_queued || s->q_bytes + d->msg->size > s->max_queued_bytes;
}

int brk_session_offer(brk_session *s, brk_deliv *d, uint32_t *dropped)
{
	if (s->connected && s->nq == 0 && s->nfly < s->window) {
		brk_session_fly(s, d);
		return 1;
	}
	while (s->nq > 0 && brk_session_q_over(s, d)) {
		brk_deliv_free(brk_session_q_pop(s));
		(*dropped)++;
	}
	if (brk_session_q_over(s, d)) {
		// Bounds of 0 (or a message larger than the byte bound) queue nothing.
		brk_deliv_free(d);
		(*dropped)++;
		return -1;
	}
	d->next = NULL;
	if (s->q_tail != NULL)
		s->q_tail->next = d;
	else
		s->q_head = d;
	s->q_tail = d;
	s->nq++;
	s->q_bytes += d->msg->size;
	return 0;
}

brk_deliv *brk_session_next(brk_session *s, uint64_t now_ms, uint32_t *expired)
{
	uint32_t left;

	while (s->connected && s->nfly < s->window && s->q_head != NULL) {
		brk_deliv *d = brk_session_q_pop(s);

		if (!brk_msg_expiry_left(d->msg, now_ms, &left)) {
			brk_deliv_free(d);
			(*expired)++;
			continue;
		}
		brk_session_fly(s, d);
		return d;
	}
	return NULL;
}

void brk_session_restore(brk_session *s, brk_deliv *d)
{
	d->next = NULL;
	if (d->seq >= s->next_seq)
		s->next_seq = d->seq + 1;
	if (d->pid != 0) {
		if (s->fly_tail != NULL)
			s->fly_tail->next = d;
		else
			s->fly_head = d;
		s->fly_tail = d;
		s->nfly++;
		s->next_pid = (uint16_t)(d->pid + 1);
		return;
	}
	if (s->q_tail != NULL)
		s->q_tail->next = d;
	else
		s->q_head = d;
	s->q_tail = d;
	s->nq++;
	s->q_bytes += d->msg->size;
}

brk_deliv *brk_session_find(brk_session *s, uint16_t pid)
{
	for (brk_deliv *d = s->fly_head; d != NULL; d = d->next)
		if (d->pid == pid)
			return d;
	return NULL;
}

static bool brk_session_unlink(brk_session *s, brk_deliv *target)
{
	brk_deliv *prev = NULL;

	for (brk_deliv *d = s->fly_head; d != NULL; prev = d, d = d->next) {
		if (d != target)
			continue;
		if (prev != NULL)
			prev->next = d->next;
		else
			s->fly_head = d->next;
		if (s->fly_tail == d)
			s->fly_tail = prev;
		s->nfly--;
		brk_deliv_free(d);
		return true;
	}
	return false;
}

bool brk_session_done(brk_session *s, uint16_t pid)
{
	brk_deliv *d = brk_session_find(s, pid);

	return d != NULL && brk_session_unlink(s, d);
}

void brk_session_discard(brk_session *s, brk_deliv *d)
{
	brk_session_unlink(s, d);
}

// A session's subscriptions are packed in one allocation (most sessions
// hold one filter: one malloc chunk instead of an array plus a copy of each
// filter): u32 bytes used (this header included), then per filter its u16
// length, its brk_subopts (copied, unaligned) and its bytes.
#define BRK_SUBS_HDR 4u
#define BRK_SUB_HDR ((uint32_t)(2 + sizeof(brk_subopts)))

static uint32_t brk_subs_used(const brk_session *s)
{
	uint32_t used = 0;

	if (s->subs != NULL)
		memcpy(&used, s->subs, sizeof(used));
	return used;
}

static uint16_t brk_subs_len(const brk_session *s, uint32_t at)
{
	uint16_t len;

	memcpy(&len, s->subs + at, sizeof(len));
	return len;
}

bool brk_session_sub_next(const brk_session *s, uint32_t *off, hw_bytes *filter, brk_subopts *o)
{
	uint32_t at = *off != 0 ? *off : BRK_SUBS_HDR;
	uint16_t len;

	if (at >= brk_subs_used(s))
		return false;
	len = brk_subs_len(s, at);
	if (o != NULL)
		memcpy(o, s->subs + at + 2, sizeof(*o));
	*filter = (hw_bytes){ s->subs + at + BRK_SUB_HDR, len };
	*off = at + BRK_SUB_HDR + len;
	return true;
}

// brk_subs_find returns the offset of filter's entry, or 0.
static uint32_t brk_subs_find(const brk_session *s, hw_bytes filter)
{
	uint32_t off = 0, at;
	hw_bytes f;

	for (at = BRK_SUBS_HDR; brk_session_sub_next(s, &off, &f, NULL); at = off)
		if (f.len == filter.len && memcmp(f.ptr, filter.ptr, filter.len) == 0)
			return at;
	return 0;
}

hw_err brk_session_sub_put(brk_session *s, hw_bytes filter, const brk_subopts *o, bool *existed)
{
	uint32_t at = brk_subs_find(s, filter), used = brk_subs_used(s);
	uint16_t len = (uint16_t)filter.len;
	uint8_t *ns;

	*existed = at != 0;
	if (at != 0) {
		memcpy(s->subs + at + 2, o, sizeof(*o));
		return HW_OK;
	}
	if (filter.len > UINT16_MAX)
		return HW_EINVAL;
	if (used == 0)
		used = BRK_SUBS_HDR;
	if (used > UINT32_MAX - BRK_SUB_HDR - len)
		return HW_ENOMEM;
	if ((ns = realloc(s->subs, used + BRK_SUB_HDR + len)) == NULL)
		return HW_ENOMEM;
	s->subs = ns;
	memcpy(ns + used, &len, sizeof(len));
	memcpy(ns + used + 2, o, sizeof(*o));
	if (len != 0)
		memcpy(ns + used + BRK_SUB_HDR, filter.ptr, len);
	used += BRK_SUB_HDR + len;
	memcpy(ns, &used, sizeof(used));
	s->nsubs++;
	return HW_OK;
}

bool brk_session_sub_del(brk_session *s, hw_bytes filter)
{
	uint32_t at = brk_subs_find(s, filter), used = brk_subs_used(s), size;
	uint8_t *ns;

	if (at == 0)
		return false;
	size = BRK_SUB_HDR + brk_subs_len(s, at);
	memmove(s->subs + at, s->subs + at + size, used - at - size);
	used -= size;
	memcpy(s->subs, &used, sizeof(used));
	if (--s->nsubs == 0) {
		free(s->subs);
		s->subs = NULL;
	} else if ((ns = realloc(s->subs, used)) != NULL) {
		s->subs = ns; // a failed shrink keeps the larger block
	}
	return true;
}

brk_in2 *brk_session_in2_find(brk_session *s, uint16_t pid)
{
	for (size_t i = 0; i < s->nin2; i++)
		if (s->in2[i].pid == pid)
			return &s->in2[i];
	return NULL;
}

hw_err brk_session_in2_add(brk_session *s, uint16_t pid)
{
	if (s->nin2 == UINT16_MAX) // every packet id is in already
		return HW_EINVAL;
	if (!brk_room((void **)&s->in2, s->nin2, 4, sizeof(*s->in2)))
		return HW_ENOMEM;
	s->in2[s->nin2++] = (brk_in2){ .pid = pid };
	return HW_OK;
}

bool brk_session_in2_del(brk_session *s, uint16_t pid)
{
	brk_in2 *e = brk_session_in2_find(s, pid);

	if (e == NULL)
		return false;
	*e = s->in2[--s->nin2];
	return true;
}

hw_err brk_session_alias_reset(brk_session *s, uint16_t max)
{
	if (s->alias != NULL) {
		for (uint16_t i = 0; i < s->nalias; i++)
			free((void *)s->alias[i].ptr);
		free(s->alias);
	}
	s->alias = NULL;
	// The table itself is allocated by the first alias_set: most clients
	// never use topic aliases, and max * 16 bytes per idle session adds up.
	s->nalias = max;
	return HW_OK;
}

hw_err brk_session_alias_set(brk_session *s, uint16_t alias, hw_bytes topic)
{
	uint8_t *copy;

	if (alias == 0 || alias > s->nalias)
		return HW_EINVAL;
	if (s->alias == NULL) {
		s->alias = calloc(s->nalias, sizeof(*s->alias));
		if (s->alias == NULL)
			return HW_ENOMEM;
	}
	copy = malloc(topic.len ? topic.len : 1);
	if (copy == NULL)
		return HW_ENOMEM;
	memcpy(copy, topic.ptr, topic.len);
	free((void *)s->alias[alias - 1].ptr);
	s->alias[alias - 1] = (hw_bytes){ copy, topic.len };
	return HW_OK;
}

hw_bytes brk_session_alias_get(const brk_session *s, uint16_t alias)
{
	if (alias == 0 || alias > s->nalias || s->alias == NULL ||
	    s->alias[alias - 1].ptr == NULL)
		return HW_BYTES_NULL;
	return s->alias[alias - 1];
}

brk_msg_origin brk_session_origin(const brk_session *s, const char *edge)
{
	const char *user = s->identity != NULL ? brk_identity_user(s->identity) : NULL;

	return (brk_msg_origin){
		.client_id = { (const uint8_t *)s->client_id, s->client_id_len },
		.user_id = hw_bytes_of_cstr(user),
		.edge = hw_bytes_of_cstr(edge),
	};
}
