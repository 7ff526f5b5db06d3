#ifndef EDGE_ADDR_H
#define EDGE_ADDR_H

#include <stddef.h>

#include "core/err.h"

// Listen addresses: "host:port", "[v6addr]:port" or ":port". An empty host,
// "0.0.0.0" and "*" mean every IPv4 address; "::" every address (dual stack).

#define EDGE_ADDR_HOST_MAX 256

typedef struct edge_addr {
	char host[EDGE_ADDR_HOST_MAX]; // "" = any address
	int  port;                     // 0..65535; 0 picks a free port
	int  ipv6;                     // host is an IPv6 address (or "::")
} edge_addr;

// edge_addr_parse parses s into out. HW_EINVAL names no field: the caller
// reports the config key. An empty s is HW_ENOTFOUND (listener disabled).
hw_err edge_addr_parse(const char *s, edge_addr *out);

#endif
