// Topic names and filters, MQTT section 4.7 (mqtt/topic.h).

#include "mqtt/topic.h"

#include <string.h>

#include "mqtt/codec.h"

bool hw_topic_filter_has_wildcard(hw_bytes filter)
{
	return filter.len != 0 &&
	    (memchr(filter.ptr, '+', filter.len) != NULL || memchr(filter.ptr, '#', filter.len) != NULL);
}

bool hw_topic_name_valid(hw_bytes name)
{
	return name.len != 0 && name.len <= 0xFFFF && !hw_topic_filter_has_wildcard(name) &&
	    hw_mqtt_utf8_valid(name);
}

bool hw_topic_filter_valid(hw_bytes filter)
{
	const uint8_t *f = filter.ptr;
	size_t n = filter.len;

	if (n == 0 || n > 0xFFFF || !hw_mqtt_utf8_valid(filter))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (f[i] != '+' && f[i] != '#')
			continue;
		// A wildcard must fill its whole level...
		if ((i > 0 && f[i - 1] != '/') || (i + 1 < n && f[i + 1] != '/'))
			return false;
		// ...and '#' must be the last level.
		if (f[i] == '#' && i + 1 != n)
			return false;
	}
	return true;
}

int hw_topic_share_parse(hw_bytes full, hw_bytes *group, hw_bytes *filter)
{
	static const char prefix[] = "$share/";
	const size_t plen = sizeof prefix - 1;
	size_t i;

	if (full.len < plen || memcmp(full.ptr, prefix, plen) != 0)
		return 0;
	for (i = plen; i < full.len && full.ptr[i] != '/'; i++) {
		if (full.ptr[i] == '+' || full.ptr[i] == '#')
			return -1;
	}
	if (i == plen || i == full.len)
		return -1;
	group->ptr = full.ptr + plen;
	group->len = i - plen;
	filter->ptr = full.ptr + i + 1;
	filter->len = full.len - i - 1;
	return hw_topic_filter_valid(*filter) && hw_mqtt_utf8_valid(*group) ? 1 : -1;
}

// Matching walks both strings level by level. A level is the bytes up to the
// next '/' or the end; "a//b" has an empty middle level and "/a" an empty
// first one, and '+' matches an empty level like any other.
bool hw_topic_match(hw_bytes filter, hw_bytes name)
{
	const uint8_t *f, *fe, *t, *te;

	if (filter.len == 0 || name.len == 0)
		return false;
	f = filter.ptr;
	fe = f + filter.len;
	t = name.ptr;
	te = t + name.len;
	// MQTT 4.7.2: wildcards at the first level do not match $-topics.
	if (t[0] == '$' && (f[0] == '+' || f[0] == '#'))
		return false;
	for (;;) {
		const uint8_t *fl = f, *tl = t;
		bool f_more, t_more;

		while (f < fe && *f != '/')
			f++;
		// '#' (necessarily the last level) matches whatever is left,
		// including nothing: "a/#" matches "a" (handled below too).
		if (f - fl == 1 && *fl == '#')
			return true;
		while (t < te && *t != '/')
			t++;
		if (!(f - fl == 1 && *fl == '+') &&
		    ((f - fl) != (t - tl) || memcmp(fl, tl, (size_t)(f - fl)) != 0))
			return false;
		f_more = f < fe; // a '/' follows this filter level
		t_more = t < te;
		if (!f_more || !t_more) {
			if (!f_more && !t_more)
				return true;
			// The name ended first: only a trailing "/#" still
			// matches (the parent level rule).
			return f_more && fe - f == 2 && f[1] == '#';
		}
		f++;
		t++;
	}
}
