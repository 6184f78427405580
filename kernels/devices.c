/* devices.c - the device registry (see devices.h): a table of backends in order of preference,
 * each with a probe that says whether it can run models here and a constructor. */
#include "kernels/devices.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/util.h"
#include "kernels/backend.h"
#include "kernels/devinfo.h"

static void probe_cpu(struct mx_device *d) {
    d->compiled = true;
    d->usable = true;
}

/* The CUDA query exists in every build (cuda_none.c without the toolkit). */
static void probe_cuda(struct mx_device *d) {
    struct mx_cuda_info ci;
    mx_cuda_info_get(&ci);
    d->compiled = ci.compiled;
    d->usable = ci.compiled && ci.n_devices > 0;
    if (!ci.compiled)
        snprintf(d->why, sizeof d->why, "CUDA is %s", ci.status);
    else if (ci.n_devices == 0)
        snprintf(d->why, sizeof d->why, "no CUDA device: %s", ci.status);
}

/* "cuda" is the first device; "cuda:N" (mx_device_open) picks another */
static struct mx_backend *open_cuda(int n_threads, struct mx_err *err) {
    (void)n_threads;
    return mx_backend_cuda_new(0, err);
}

static const struct {
    const char *name;
    const char *what;
    void (*probe)(struct mx_device *d);
    struct mx_backend *(*open)(int n_threads, struct mx_err *err); /* NULL: none yet */
} devices[] = {
    {"cuda", "NVIDIA GPU (CUDA kernels + cuBLAS)", probe_cuda, open_cuda},
    {"cpu", "CPU (SIMD kernels with run-time dispatch + OpenBLAS)", probe_cpu, mx_backend_cpu_new},
};

int mx_device_count(void) {
    return (int)MX_ARRAY_LEN(devices);
}

const char *mx_device_name(int i) {
    return i >= 0 && i < mx_device_count() ? devices[i].name : NULL;
}

int mx_device_get(int i, struct mx_device *d) {
    if (i < 0 || i >= mx_device_count())
        return MX_EINVAL;
    memset(d, 0, sizeof *d);
    d->name = devices[i].name;
    d->what = devices[i].what;
    devices[i].probe(d);
    d->usable = d->usable && devices[i].open != NULL;
    return 0;
}

const char *mx_device_best(void) {
    struct mx_device d;
    for (int i = 0; i < mx_device_count(); i++)
        if (mx_device_get(i, &d) == 0 && d.usable)
            return d.name;
    return "cpu"; /* always usable; kept as the answer if a probe misbehaves */
}

int mx_device_cuda_index(const char *name) {
    if (!name || strncmp(name, "cuda", 4) != 0)
        return -1;
    if (!name[4])
        return 0;
    if (name[4] != ':')
        return -1;
    char *end;
    long idx = strtol(name + 5, &end, 10);
    return end == name + 5 || *end || idx < 0 || idx > 255 ? -1 : (int)idx;
}

struct mx_backend *mx_device_open(const char *name, int n_threads, struct mx_err *err) {
    if (!name || !*name || !strcmp(name, "auto"))
        name = mx_device_best();
    if (!strncmp(name, "cuda:", 5)) { /* a GPU by index */
        int idx = mx_device_cuda_index(name);
        if (idx < 0) {
            mx_err_set(err, MX_EINVAL, "device '%s': expected cuda:N with N a GPU index", name);
            return NULL;
        }
        struct mx_device d;
        mx_device_get(0, &d);
        if (!d.usable) {
            mx_err_set(err, MX_EUNSUP, "device '%s' cannot be used: %s", name, d.why);
            return NULL;
        }
        return mx_backend_cuda_new(idx, err);
    }
    for (int i = 0; i < mx_device_count(); i++) {
        if (strcmp(name, devices[i].name) != 0)
            continue;
        struct mx_device d;
        mx_device_get(i, &d);
        if (!d.usable) {
            mx_err_set(err, MX_EUNSUP, "device '%s' cannot be used: %s", name, d.why);
            return NULL;
        }
        return devices[i].open(n_threads, err);
    }
    char names[128] = "";
    size_t n = 0;
    for (int i = 0; i < mx_device_count() && n < sizeof names; i++)
        n += (size_t)snprintf(names + n, sizeof names - n, "%s, ", devices[i].name);
    mx_err_set(err, MX_EINVAL, "unknown device '%s' (choose auto, %.*s)", name,
               (int)(n >= 2 ? n - 2 : 0), names);
    return NULL;
}
