#ifndef HW_MQTT_TOPIC_H
#define HW_MQTT_TOPIC_H

#include <stdbool.h>

#include "core/buf.h"

// Topic names and filters (MQTT section 4.7).

// hw_topic_name_valid: non-empty, valid UTF-8 without U+0000, no '+' or '#',
// at most 65535 bytes.
bool hw_topic_name_valid(hw_bytes name);

// hw_topic_filter_valid: non-empty, valid UTF-8, '+' only as a whole level,
// '#' only as the whole last level, at most 65535 bytes.
bool hw_topic_filter_valid(hw_bytes filter);

// hw_topic_filter_has_wildcard tells whether filter contains + or #.
bool hw_topic_filter_has_wildcard(hw_bytes filter);

// hw_topic_share_parse recognises an MQTT 5 shared subscription filter
// "$share/<ShareName>/<filter>" (section 4.8.2). Returns 0 when `full` does
// not start with "$share/" (an ordinary filter); 1 when it does and is valid
// (ShareName non-empty without '/', '+' or '#'; the inner filter passes
// hw_topic_filter_valid), with *group and *filter set to views into full;
// -1 when it starts with "$share/" but is invalid (answer SUBACK 0x8F).
int hw_topic_share_parse(hw_bytes full, hw_bytes *group, hw_bytes *filter);

// hw_topic_match reports whether topic name matches filter, with the rule
// that a filter starting with a wildcard does not match names that start with
// '$' (MQTT 4.7.2). Both arguments must already be valid.
bool hw_topic_match(hw_bytes filter, hw_bytes name);

#endif
