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

// hw_topic_match reports whether topic name matches filter, with the rule
// that a filter starting with a wildcard does not match names that start with
// '$' (MQTT 4.7.2). Both arguments must already be valid.
bool hw_topic_match(hw_bytes filter, hw_bytes name);

#endif
