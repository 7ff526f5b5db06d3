#ifndef EDGE_RX_H
#define EDGE_RX_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

// Reassembly of a byte stream (TCP reads, WebSocket frames) into whole MQTT
// control packets. Complete packets inside one input chunk are handed out
// in place, without copying; only a packet split across chunks is copied,
// into a buffer that exists only while that partial packet is pending (an
// idle connection holds no receive buffer).

typedef struct edge_rx {
	uint8_t *buf;   // NULL unless a partial packet is pending
	uint32_t len;   // bytes of the pending packet held
	uint32_t need;  // its whole length, or 0 while the header is incomplete
} edge_rx;

// edge_rx_fn receives one whole packet (fixed header included). The bytes
// are valid only during the call. Return 0 to go on, non-zero to stop
// (the connection is closing): edge_rx_feed then returns HW_ECLOSED and
// drops the rest of the input.
typedef int (*edge_rx_fn)(void *arg, const uint8_t *pkt, size_t len);

// edge_rx_feed consumes in[0..n): calls fn once per complete packet, keeps
// a trailing partial packet. Errors (the connection must be closed):
// HW_EMALFORMED (bad remaining length or packet type 0), HW_ETOOBIG
// (over max_packet), HW_ENOMEM, HW_ECLOSED (fn asked to stop).
hw_err edge_rx_feed(edge_rx *rx, const uint8_t *in, size_t n, size_t max_packet,
    edge_rx_fn fn, void *arg);

// edge_rx_pending reports whether a partial packet is buffered.
static inline int edge_rx_pending(const edge_rx *rx)
{
	return rx->len != 0;
}

// edge_rx_fini frees the pending buffer; rx is empty and reusable.
void edge_rx_fini(edge_rx *rx);

#endif
