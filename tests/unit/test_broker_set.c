// brk_set, the broker's open-addressing index of self-keyed objects:
// lookups, replacement, deletion by backward shift (checked against a
// plain array after every step of a random put/delete sequence), each and
// pick.
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "set.h"

typedef struct obj {
	char key[12];
	int  tag;
} obj;

static hw_bytes obj_key(const void *val, uint8_t *buf)
{
	const obj *o = val;

	(void)buf;
	return hw_bytes_of_cstr(o->key);
}

// A key built in the caller's buffer, like the connection keys.
static hw_bytes obj_built_key(const void *val, uint8_t *buf)
{
	const obj *o = val;

	memcpy(buf, &o->tag, sizeof(o->tag));
	return (hw_bytes){ buf, sizeof(o->tag) };
}

static void test_put_get_replace_del(void **state)
{
	brk_set s;
	obj a = { "a", 1 }, b = { "b", 2 }, a2 = { "a", 3 }, empty = { "", 4 };
	void *old;

	(void)state;
	brk_set_init(&s, obj_key);
	assert_null(brk_set_get(&s, hw_bytes_of_cstr("a")));
	assert_null(brk_set_del(&s, hw_bytes_of_cstr("a")));
	assert_int_equal(brk_set_put(&s, &a, &old), HW_OK);
	assert_null(old);
	assert_int_equal(brk_set_put(&s, &b, NULL), HW_OK);
	assert_int_equal(brk_set_put(&s, &empty, NULL), HW_OK);
	assert_ptr_equal(brk_set_get(&s, hw_bytes_of_cstr("a")), &a);
	assert_ptr_equal(brk_set_get(&s, hw_bytes_of_cstr("")), &empty);
	assert_null(brk_set_get(&s, hw_bytes_of_cstr("c")));
	// An object with the same key replaces the old one.
	assert_int_equal(brk_set_put(&s, &a2, &old), HW_OK);
	assert_ptr_equal(old, &a);
	assert_int_equal(brk_set_count(&s), 3);
	assert_ptr_equal(brk_set_get(&s, hw_bytes_of_cstr("a")), &a2);
	assert_ptr_equal(brk_set_del(&s, hw_bytes_of_cstr("a")), &a2);
	assert_null(brk_set_get(&s, hw_bytes_of_cstr("a")));
	assert_ptr_equal(brk_set_get(&s, hw_bytes_of_cstr("b")), &b);
	assert_int_equal(brk_set_count(&s), 2);
	brk_set_fini(&s);
}

static void test_random_against_array(void **state)
{
	enum { N = 3000 };
	static obj objs[N];
	static bool in[N];
	brk_set s;
	unsigned seed = 12345;

	(void)state;
	brk_set_init(&s, obj_key);
	for (int i = 0; i < N; i++) {
		snprintf(objs[i].key, sizeof(objs[i].key), "k%d", i);
		objs[i].tag = i;
	}
	for (int step = 0; step < 40000; step++) {
		int i;

		seed = seed * 1103515245u + 12345u;
		i = (int)((seed >> 8) % N);
		if ((seed >> 4) % 3 != 0) {
			assert_int_equal(brk_set_put(&s, &objs[i], NULL), HW_OK);
			in[i] = true;
		} else {
			assert_ptr_equal(brk_set_del(&s, hw_bytes_of_cstr(objs[i].key)),
			    in[i] ? &objs[i] : NULL);
			in[i] = false;
		}
		if (step % 1000 == 0) {
			size_t n = 0;

			for (int j = 0; j < N; j++) {
				assert_ptr_equal(brk_set_get(&s, hw_bytes_of_cstr(objs[j].key)),
				    in[j] ? &objs[j] : NULL);
				n += in[j];
			}
			assert_int_equal(brk_set_count(&s), n);
		}
	}
	brk_set_fini(&s);
}

static void count_one(void *arg, void *val)
{
	(void)val;
	(*(int *)arg)++;
}

static bool keep_odd(void *arg, void *val)
{
	(void)arg;
	return ((obj *)val)->tag % 2 != 0;
}

static void test_built_keys_each_pick(void **state)
{
	obj objs[100];
	brk_set s;
	void **picked;
	size_t n;
	int seen = 0, key;

	(void)state;
	brk_set_init(&s, obj_built_key);
	for (int i = 0; i < 100; i++) {
		objs[i].key[0] = 0;
		objs[i].tag = i * 7;
		assert_int_equal(brk_set_put(&s, &objs[i], NULL), HW_OK);
	}
	key = 21;
	assert_ptr_equal(brk_set_get(&s, (hw_bytes){ (uint8_t *)&key, sizeof(key) }), &objs[3]);
	brk_set_each(&s, count_one, &seen);
	assert_int_equal(seen, 100);
	n = brk_set_pick(&s, keep_odd, NULL, &picked);
	assert_int_equal(n, 50);
	// The caller may change the set while it walks what it picked.
	for (size_t i = 0; i < n; i++) {
		key = ((obj *)picked[i])->tag;
		assert_ptr_equal(brk_set_del(&s, (hw_bytes){ (uint8_t *)&key, sizeof(key) }), picked[i]);
	}
	free(picked);
	assert_int_equal(brk_set_count(&s), 50);
	for (int i = 0; i < 100; i++) {
		key = objs[i].tag;
		assert_ptr_equal(brk_set_get(&s, (hw_bytes){ (uint8_t *)&key, sizeof(key) }),
		    i % 2 == 0 ? &objs[i] : NULL);
	}
	brk_set_fini(&s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_replace_del),
		cmocka_unit_test(test_random_against_array),
		cmocka_unit_test(test_built_keys_each_pick),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
