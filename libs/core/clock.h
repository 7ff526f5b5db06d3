#ifndef HW_CORE_CLOCK_H
#define HW_CORE_CLOCK_H

#include <stdint.h>

// hw_clock_mono_ms returns a monotonic time in milliseconds.
uint64_t hw_clock_mono_ms(void);
// hw_clock_mono_us returns a monotonic time in microseconds.
uint64_t hw_clock_mono_us(void);
// hw_clock_unix_us returns wall-clock time in microseconds since the epoch.
uint64_t hw_clock_unix_us(void);

#endif
