#include "rx.h"

#include <stdlib.h>
#include <string.h>

#include "mqtt/codec.h"

// A fixed header is at most 5 bytes: type byte + 4-byte variable integer.
#define EDGE_RX_HDR_MAX 5

void edge_rx_fini(edge_rx *rx)
{
	free(rx->buf);
	rx->buf = NULL;
	rx->len = 0;
	rx->need = 0;
}

// edge_rx_complete continues a pending packet with bytes from *in. It sets
// *done when the packet is whole (then rx->buf holds rx->need bytes).
static hw_err edge_rx_complete(edge_rx *rx, const uint8_t **in, size_t *n,
    size_t max_packet, int *done)
{
	*done = 0;
	while (rx->need == 0 && *n > 0) {
		size_t flen;
		hw_err err;

		// Header still incomplete: take one byte at a time (at most 4 more).
		rx->buf[rx->len++] = **in;
		(*in)++;
		(*n)--;
		err = hw_mqtt_frame(rx->buf, rx->len, max_packet, &flen);
		if (err == HW_EAGAIN) {
			if (rx->len >= EDGE_RX_HDR_MAX)
				return HW_EMALFORMED;
			continue;
		}
		if (err != HW_OK)
			return err;
		if (flen > rx->len) {
			uint8_t *nb = realloc(rx->buf, flen);

			if (nb == NULL)
				return HW_ENOMEM;
			rx->buf = nb;
		}
		rx->need = (uint32_t)flen;
	}
	if (rx->need != 0) {
		size_t take = rx->need - rx->len;

		if (take > *n)
			take = *n;
		memcpy(rx->buf + rx->len, *in, take);
		rx->len += (uint32_t)take;
		*in += take;
		*n -= take;
		*done = rx->len == rx->need;
	}
	return HW_OK;
}

// edge_rx_stash keeps the partial packet in[0..n) (n < its length).
static hw_err edge_rx_stash(edge_rx *rx, const uint8_t *in, size_t n, size_t flen)
{
	size_t cap = flen != 0 ? flen : EDGE_RX_HDR_MAX;

	rx->buf = malloc(cap);
	if (rx->buf == NULL)
		return HW_ENOMEM;
	memcpy(rx->buf, in, n);
	rx->len = (uint32_t)n;
	rx->need = (uint32_t)flen;
	return HW_OK;
}

hw_err edge_rx_feed(edge_rx *rx, const uint8_t *in, size_t n, size_t max_packet,
    edge_rx_fn fn, void *arg)
{
	hw_err err;

	if (rx->len != 0) {
		int done;

		err = edge_rx_complete(rx, &in, &n, max_packet, &done);
		if (err != HW_OK)
			return err;
		if (!done)
			return HW_OK;
		{
			int stop = fn(arg, rx->buf, rx->need);

			edge_rx_fini(rx);
			if (stop)
				return HW_ECLOSED;
		}
	}
	while (n > 0) {
		size_t flen = 0;

		err = hw_mqtt_frame(in, n, max_packet, &flen);
		if (err == HW_EAGAIN) {
			if (n >= EDGE_RX_HDR_MAX)
				return HW_EMALFORMED;
			return edge_rx_stash(rx, in, n, 0);
		}
		if (err != HW_OK)
			return err;
		if (flen > n)
			return edge_rx_stash(rx, in, n, flen);
		if (fn(arg, in, flen))
			return HW_ECLOSED;
		in += flen;
		n -= flen;
	}
	return HW_OK;
}
