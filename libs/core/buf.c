// Byte views, growable buffers and the bounded wire reader (core/buf.h).

#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

hw_bytes hw_bytes_of_cstr(const char *s)
{
	hw_bytes b = HW_BYTES_NULL;

	if (s != NULL) {
		b.ptr = (const uint8_t *)s;
		b.len = strlen(s);
	}
	return b;
}

int hw_bytes_eq(hw_bytes a, hw_bytes b)
{
	if (a.len != b.len)
		return 0;
	// memcmp must not see NULL even for zero lengths.
	return a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0;
}

hw_err hw_buf_reserve(hw_buf *b, size_t more)
{
	size_t need, cap;
	uint8_t *p;

	if (more > SIZE_MAX - b->len)
		return HW_ETOOBIG;
	need = b->len + more;
	if (b->limit != 0 && need > b->limit)
		return HW_ETOOBIG;
	if (need <= b->cap)
		return HW_OK;
	// Grow geometrically so a series of appends stays amortised O(1).
	cap = b->cap < 64 ? 64 : b->cap;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (b->limit != 0 && cap > b->limit)
		cap = b->limit;
	p = realloc(b->ptr, cap);
	if (p == NULL)
		return HW_ENOMEM;
	b->ptr = p;
	b->cap = cap;
	return HW_OK;
}

hw_err hw_buf_append(hw_buf *b, const void *p, size_t n)
{
	hw_err err;

	if (n == 0)
		return HW_OK;
	if ((err = hw_buf_reserve(b, n)) != HW_OK)
		return err;
	memcpy(b->ptr + b->len, p, n);
	b->len += n;
	return HW_OK;
}

hw_err hw_buf_append_u8(hw_buf *b, uint8_t v)
{
	return hw_buf_append(b, &v, 1);
}

hw_err hw_buf_append_u16be(hw_buf *b, uint16_t v)
{
	uint8_t w[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	return hw_buf_append(b, w, sizeof w);
}

hw_err hw_buf_append_u32be(hw_buf *b, uint32_t v)
{
	uint8_t w[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };

	return hw_buf_append(b, w, sizeof w);
}

void hw_buf_consume(hw_buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->ptr, b->ptr + n, b->len - n);
	b->len -= n;
}

void hw_buf_reset(hw_buf *b)
{
	b->len = 0;
}

void hw_buf_fini(hw_buf *b)
{
	free(b->ptr);
	b->ptr = NULL;
	b->len = 0;
	b->cap = 0;
}

hw_err hw_rd_u8(hw_rd *rd, uint8_t *v)
{
	if (hw_rd_left(rd) < 1)
		return HW_EMALFORMED;
	*v = rd->p[0];
	rd->p += 1;
	return HW_OK;
}

hw_err hw_rd_u16(hw_rd *rd, uint16_t *v)
{
	if (hw_rd_left(rd) < 2)
		return HW_EMALFORMED;
	*v = (uint16_t)((rd->p[0] << 8) | rd->p[1]);
	rd->p += 2;
	return HW_OK;
}

hw_err hw_rd_u32(hw_rd *rd, uint32_t *v)
{
	if (hw_rd_left(rd) < 4)
		return HW_EMALFORMED;
	*v = ((uint32_t)rd->p[0] << 24) | ((uint32_t)rd->p[1] << 16) |
	    ((uint32_t)rd->p[2] << 8) | (uint32_t)rd->p[3];
	rd->p += 4;
	return HW_OK;
}

hw_err hw_rd_bytes(hw_rd *rd, size_t n, hw_bytes *out)
{
	if (hw_rd_left(rd) < n)
		return HW_EMALFORMED;
	out->ptr = rd->p;
	out->len = n;
	rd->p += n;
	return HW_OK;
}
