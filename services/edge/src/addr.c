#include "addr.h"

#include <stdlib.h>
#include <string.h>

// edge_addr_port parses a decimal port 0..65535 (no sign, no spaces).
static int edge_addr_port(const char *p, int *out)
{
	long v = 0;

	if (*p == '\0' || strlen(p) > 5)
		return -1;
	for (; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	if (v > 65535)
		return -1;
	*out = (int)v;
	return 0;
}

hw_err edge_addr_parse(const char *s, edge_addr *out)
{
	const char *colon;
	size_t hlen;

	memset(out, 0, sizeof(*out));
	if (s == NULL || *s == '\0')
		return HW_ENOTFOUND;

	if (s[0] == '[') {
		const char *close = strchr(s, ']');

		if (close == NULL || close[1] != ':')
			return HW_EINVAL;
		hlen = (size_t)(close - s - 1);
		if (hlen == 0 || hlen >= sizeof(out->host))
			return HW_EINVAL;
		memcpy(out->host, s + 1, hlen);
		out->ipv6 = 1;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return HW_EINVAL;
		hlen = (size_t)(colon - s);
		if (memchr(s, ':', hlen) != NULL) // bare IPv6 needs brackets
			return HW_EINVAL;
		if (hlen >= sizeof(out->host))
			return HW_EINVAL;
		memcpy(out->host, s, hlen);
	}
	if (edge_addr_port(colon + 1, &out->port) != 0)
		return HW_EINVAL;

	if (strcmp(out->host, "0.0.0.0") == 0 || strcmp(out->host, "*") == 0)
		out->host[0] = '\0';
	if (out->ipv6 && strcmp(out->host, "::") == 0)
		out->host[0] = '\0';
	return HW_OK;
}
