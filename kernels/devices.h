/* devices.h - the device registry: which compute backends this binary has, which of them can
 * run models on this machine now, and opening one by name or the best available.
 *
 * Front ends never call a backend's constructor themselves: they pass the user's --device (or
 * NULL for automatic) to mx_device_open, so "CPU" is not hard-coded anywhere above kernels/ and
 * the CUDA backend, when it lands, is picked up by every front end at once. Order of preference
 * for "auto": cuda (compiled in and a device answers), then cpu.
 */
#ifndef MX_DEVICES_H
#define MX_DEVICES_H

#include <stdbool.h>

#include "core/base/err.h"

struct mx_backend;

/* One entry of the registry, as mx_device_get fills it. */
struct mx_device {
    const char *name;     /* "cpu", "cuda": what --device accepts (static) */
    const char *what;     /* one line for doctor and --help: "CPU (SIMD kernels + OpenBLAS)" */
    bool compiled;        /* this binary has the backend */
    bool usable;          /* it can run models here now */
    char why[192];        /* when !usable: why not, worded for users; "" otherwise */
};

/* Entries in the registry (every backend mixel knows of, compiled in or not). */
int mx_device_count(void);

/* The --device name of entry i ("cpu", "cuda"; static), or NULL for a bad index. Probes nothing,
 * so checking a user's --device is free. */
const char *mx_device_name(int i);

/* Fills *d with entry i (0 <= i < mx_device_count()); probes the device (cheap: CPUID, or one
 * CUDA runtime query). Returns 0 or MX_EINVAL for a bad index. */
int mx_device_get(int i, struct mx_device *d);

/* Name of the device "auto" picks now: the first usable one in order of preference. */
const char *mx_device_best(void);

/* Opens a backend on the named device: NULL, "" or "auto" means mx_device_best(). n_threads is
 * for the CPU backend (<= 0: physical cores). Returns the backend (caller owns;
 * mx_backend_free) or NULL with err set: MX_EINVAL for a name not in the registry (the message
 * lists the names), MX_EUNSUP for a device that is not usable here (the message says why), or
 * the backend's own error. */
struct mx_backend *mx_device_open(const char *name, int n_threads, struct mx_err *err);

/* The GPU index a --device name picks: 0 for "cuda", N for "cuda:N" (0..255), -1 for a
 * malformed "cuda:" suffix or a name that is not CUDA's. */
int mx_device_cuda_index(const char *name);

#endif
