#ifndef RTR_FILTER_FILTER_H
#define RTR_FILTER_FILTER_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

// The router's built-in filters for `filtered` pipelines (`builtin:` in a
// router.pipelines row): the router consumes the raw topic, asks
// rtr_filter_check about each record, and produces the records it accepts
// to the clean topic. Three checks, in this order; the first that fails
// names the reason:
//   size   the payload is longer than max_bytes (0: no limit);
//   words  the payload contains a word of words_file as a whole word,
//          ASCII case-insensitively (the record is rejected, not masked:
//          a filter that changes what a user wrote silently is worse than
//          one that refuses it, and a backend that wants masking can run an
//          external filter);
//   rate   the publishing client id has no token left in its bucket
//          (rate_per_s tokens a second, at most burst; 0: no limit).
//
// Words file: UTF-8 text, one word per line; blank lines and lines that
// start with '#' are ignored; surrounding blanks are trimmed. A word is a
// run of ASCII letters and digits and of bytes >= 0x80 (so UTF-8 words
// stay whole); a listed phrase with other characters never matches.
//
// Rate buckets live in a hash table by client id; buckets that have been
// full for a while (idle clients) are swept out as the table grows, so
// memory follows the number of recently active publishers.
//
// Threading: one filter belongs to one thread (the router's processing
// thread); nothing is locked.

typedef struct rtr_filter_conf {
	uint32_t max_bytes;   // 0: no size limit
	char    *words_file;  // NULL: no word list
	uint32_t rate_per_s;  // 0: no rate limit
	uint32_t burst;       // bucket size; 0 with a rate: the rate (1 s)
} rtr_filter_conf;

typedef enum rtr_filter_verdict {
	RTR_FILTER_PASS = 0,
	RTR_FILTER_SIZE,
	RTR_FILTER_WORDS,
	RTR_FILTER_RATE,
} rtr_filter_verdict;

#define RTR_FILTER_REASONS 4

typedef struct rtr_filter rtr_filter;

// rtr_filter_alloc builds a filter from c (copied; the words file is read
// now). HW_ECONFIG when the words file cannot be read, with *why (heap,
// caller frees) naming the file and the error. Any thread.
hw_err rtr_filter_alloc(rtr_filter **out, const rtr_filter_conf *c, char **why);

// rtr_filter_check judges one record: payload as published, client_id the
// publisher's ("" counts as one client), now_us a monotonic clock in
// microseconds. Takes a token from the client's bucket only when every
// other check passed.
rtr_filter_verdict rtr_filter_check(rtr_filter *f, const char *client_id, hw_bytes payload,
    uint64_t now_us);

// rtr_filter_words returns how many words the list holds.
size_t rtr_filter_words(const rtr_filter *f);

// rtr_filter_clients returns how many rate buckets are held.
size_t rtr_filter_clients(const rtr_filter *f);

// rtr_filter_reason_name names a verdict for metrics and logs: "pass",
// "size", "words", "rate".
const char *rtr_filter_reason_name(rtr_filter_verdict v);

// rtr_filter_conf_fini frees what a conf owns. Safe on a zeroed conf.
void rtr_filter_conf_fini(rtr_filter_conf *c);

// rtr_filter_free frees f. NULL ok.
void rtr_filter_free(rtr_filter *f);

#endif
