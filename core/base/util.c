/* util.c - out-of-line parts of util.h. */
#include "core/base/util.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double mx_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

uint64_t mx_mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) {
        long pages = sysconf(_SC_AVPHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
        return pages > 0 && psz > 0 ? (uint64_t)pages * (uint64_t)psz : 0;
    }
    char line[256];
    unsigned long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lu kB", &kb) == 1)
            break;
    fclose(f);
    return (uint64_t)kb * 1024;
}
