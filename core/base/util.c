/* util.c - out-of-line parts of util.h. */
#include "core/base/util.h"

#include <time.h>

double mx_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
