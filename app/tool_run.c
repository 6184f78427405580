/* tool_run.c - the tools that run here (tools.h): read_file inside the allowed folders, a user's
 * command with fork/execve (JSON on stdin, stdout and stderr bounded in size and time), and
 * generate_image's arguments turned into an image request for the front end's image job.
 *
 * Tuned for small, short tools (a lookup, a script): output is kept in memory and the whole
 * run is one poll loop; a command is a separate process group so a timeout kills its children
 * too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pipe2 */
#endif
#include "app/tools.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "app/image_job.h"
#include "core/base/util.h"

extern char **environ;

/* ---- read_file ------------------------------------------------------------------------------ */

/* True when real (a realpath) is dir or below it. */
static bool below(const char *real, const char *dir) {
    size_t n = strlen(dir);
    if (strncmp(real, dir, n) != 0)
        return false;
    return real[n] == '\0' || real[n] == '/' || (n == 1 && dir[0] == '/');
}

/* True when s[0..n) is UTF-8 without NUL bytes (what a model can read as text). */
static bool text_ok(const unsigned char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t k = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (c == 0 || k == 0 || i + k > n || (k == 2 && c < 0xc2))
            return false;
        for (size_t j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return false;
        i += k;
    }
    return true;
}

int mx_tool_read_file(const struct mx_tools *t, const char *path, char **text,
                      struct mx_err *err) {
    *text = NULL;
    if (!t || t->n_allow == 0)
        return mx_err_set(err, MX_EPERM, "read_file: no folder is allowed (tools.allow_dirs "
                          "in the config, or --allow-dir)");
    if (!path || !path[0])
        return mx_err_set(err, MX_EINVAL, "read_file: no path");
    char joined[PATH_MAX], real[PATH_MAX];
    if (path[0] == '/')
        snprintf(joined, sizeof joined, "%s", path);
    else if ((size_t)snprintf(joined, sizeof joined, "%s/%s", t->allow_dirs[0], path) >=
             sizeof joined)
        return mx_err_set(err, MX_EINVAL, "read_file: the path is too long");
    if (!realpath(joined, real))
        return mx_err_set(err, errno == ENOENT ? MX_ENOENT : MX_EPERM, "read_file: %.200s: %s",
                          path, strerror(errno));
    bool ok = false;
    for (size_t i = 0; i < t->n_allow && !ok; i++)
        ok = below(real, t->allow_dirs[i]);
    if (!ok)
        return mx_err_set(err, MX_EPERM, "read_file: %.200s is outside the allowed folders",
                          path);
    /* the resolved path, opened without following a last component swapped for a link since */
    int fd = open(real, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return mx_err_set(err, MX_EPERM, "read_file: %.200s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = mx_err_set(err, MX_EPERM, "read_file: %.200s is not a regular file", path);
        goto out;
    }
    if ((size_t)st.st_size > MX_TOOL_READ_MAX) {
        rc = mx_err_set(err, MX_ERANGE, "read_file: %.200s is too big (%lld bytes, at most "
                        "%zu)", path, (long long)st.st_size, MX_TOOL_READ_MAX);
        goto out;
    }
    if (!(buf = malloc(MX_TOOL_READ_MAX + 1))) {
        rc = mx_err_set(err, MX_ENOMEM, "read_file: out of memory");
        goto out;
    }
    size_t n = 0;
    for (;;) { /* at most one byte past the limit: a file that grew since fstat */
        ssize_t k = read(fd, buf + n, MX_TOOL_READ_MAX + 1 - n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            rc = mx_err_set(err, MX_EIO, "read_file: %.200s: %s", path, strerror(errno));
            goto out;
        }
        if (k == 0 || (n += (size_t)k) > MX_TOOL_READ_MAX)
            break;
    }
    if (n > MX_TOOL_READ_MAX) {
        rc = mx_err_set(err, MX_ERANGE, "read_file: %.200s is too big (over %zu bytes)", path,
                        MX_TOOL_READ_MAX);
        goto out;
    }
    if (!text_ok((const unsigned char *)buf, n)) {
        rc = mx_err_set(err, MX_EFORMAT, "read_file: %.200s is not a text file (UTF-8 without "
                        "NUL bytes)", path);
        goto out;
    }
    buf[n] = '\0';
    *text = buf;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

/* ---- a user command ------------------------------------------------------------------------- */

/* A growing byte buffer kept to at most cap bytes (the rest counted, dropped). */
struct outbuf {
    char *p;
    size_t n, cap;
    size_t dropped;   /* bytes read past cap */
};

/* Keeps s[0..k) up to cap; tail: keep the last cap bytes instead (stderr's end). */
static int out_add(struct outbuf *o, const char *s, size_t k, bool tail) {
    if (!o->p && !(o->p = malloc(o->cap + 1)))
        return MX_ENOMEM;
    if (tail && k >= o->cap) {
        o->dropped += o->n + k - o->cap;
        memcpy(o->p, s + k - o->cap, o->cap);
        o->n = o->cap;
    } else if (tail && o->n + k > o->cap) {
        size_t drop = o->n + k - o->cap;
        memmove(o->p, o->p + drop, o->n - drop);
        o->n -= drop;
        o->dropped += drop;
        memcpy(o->p + o->n, s, k);
        o->n += k;
    } else {
        size_t keep = MX_MIN(k, o->cap - o->n);
        memcpy(o->p + o->n, s, keep);
        o->n += keep;
        o->dropped += k - keep;
    }
    o->p[o->n] = '\0';
    return 0;
}

/* The child's side: stdin/stdout/stderr onto the pipes, every other descriptor closed, its own
 * process group, then execve. Only async-signal-safe calls: the parent has threads. */
static void child(const struct mx_tool *tool, char **envp, int in, int out, int er) {
    setpgid(0, 0);
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(er, 2) < 0)
        _exit(127);
    long max = sysconf(_SC_OPEN_MAX);
    for (int fd = 3; fd < (max > 0 && max < 65536 ? max : 4096); fd++)
        close(fd);
    signal(SIGPIPE, SIG_DFL);
    execve(tool->argv[0], tool->argv, envp);
    static const char msg[] = "mixel: cannot execute the tool's program\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(127);
}

/* Writes what it can of in[*off..n) to fd without blocking; closes fd (-1) when done or when the
 * reader is gone. SIGPIPE is blocked for this thread around the write (and a pending one taken),
 * so a command that exits early cannot kill mixel. */
static void feed(int *fd, const char *in, size_t n, size_t *off) {
    sigset_t pipe_set, old;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    ssize_t k = write(*fd, in + *off, n - *off);
    int e = errno;
    if (k < 0 && e == EPIPE) {
        struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (k > 0)
        *off += (size_t)k;
    if ((k < 0 && e != EAGAIN && e != EINTR) || *off >= n) {
        close(*fd);
        *fd = -1;
    }
}

/* What the model is told about a finished command (status from waitpid). */
static int command_result(const struct mx_tool *tool, int status, struct outbuf *out,
                          struct outbuf *er, char **result, struct mx_err *err) {
    size_t size = out->n + er->n + 256;
    char *r = malloc(size);
    if (!r)
        return mx_err_set(err, MX_ENOMEM, "%s: out of memory", tool->name);
    size_t len = 0;
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        if (WIFEXITED(status))
            len += (size_t)snprintf(r + len, size - len, "exit status %d\n",
                                    WEXITSTATUS(status));
        else
            len += (size_t)snprintf(r + len, size - len, "killed by signal %d\n",
                                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    memcpy(r + len, out->p ? out->p : "", out->n);
    len += out->n;
    if (out->dropped)
        len += (size_t)snprintf(r + len, size - len, "\n[output cut: %zu more bytes]",
                                out->dropped);
    if (!ok && er->n) {
        len += (size_t)snprintf(r + len, size - len, "%sstderr%s:\n", len ? "\n" : "",
                                er->dropped ? " (its end)" : "");
        memcpy(r + len, er->p, er->n);
        len += er->n;
    }
    r[len] = '\0';
    *result = r;
    return 0;
}

int mx_tool_run_command(const struct mx_tool *tool, const char *args_json,
                        mx_tool_cancel_fn canceled, void *ud, char **result, struct mx_err *err) {
    *result = NULL;
    if (!tool || !tool->argv || !tool->argv[0])
        return mx_err_set(err, MX_EINVAL, "tool: no command");
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1};
    struct outbuf out = {.cap = tool->max_output}, er = {.cap = MX_TOOL_STDERR_TAIL};
    int rc = 0, status = 0;
    pid_t pid = -1;
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC)) {
        rc = mx_err_set(err, MX_EIO, "%s: cannot make pipes (%s)", tool->name, strerror(errno));
        goto out;
    }
    pid = fork();
    if (pid < 0) {
        rc = mx_err_set(err, MX_EIO, "%s: cannot start %s (%s)", tool->name, tool->argv[0],
                        strerror(errno));
        goto out;
    }
    if (pid == 0)
        child(tool, environ, pin[0], pout[1], perr[1]);
    setpgid(pid, pid); /* also here: no race with the kill below */
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    pin[0] = pout[1] = perr[1] = -1;
    fcntl(pin[1], F_SETFL, O_NONBLOCK);
    const char *in = args_json ? args_json : "{}";
    size_t in_n = strlen(in), in_off = 0;
    double deadline = mx_time_s() + tool->timeout_s;
    while (pout[0] >= 0 || perr[0] >= 0) {
        struct pollfd p[3];
        int np = 0, io = -1, ie = -1, ii = -1;
        if (pout[0] >= 0)
            p[io = np++] = (struct pollfd){pout[0], POLLIN, 0};
        if (perr[0] >= 0)
            p[ie = np++] = (struct pollfd){perr[0], POLLIN, 0};
        if (pin[1] >= 0)
            p[ii = np++] = (struct pollfd){pin[1], POLLOUT, 0};
        double left = deadline - mx_time_s();
        if (left <= 0) {
            rc = mx_err_set(err, MX_ETIMEDOUT, "%s: killed after %g s without finishing",
                            tool->name, tool->timeout_s);
            break;
        }
        if (canceled && canceled(ud)) {
            rc = mx_err_set(err, MX_ECANCELED, "%s: stopped", tool->name);
            break;
        }
        int ms = left > 0.1 ? 100 : (int)(left * 1000) + 1;
        int k = poll(p, (nfds_t)np, ms);
        if (k < 0 && errno != EINTR) {
            rc = mx_err_set(err, MX_EIO, "%s: poll: %s", tool->name, strerror(errno));
            break;
        }
        if (k <= 0)
            continue;
        if (ii >= 0 && p[ii].revents)
            feed(&pin[1], in, in_n, &in_off);
        int *fds[2] = {&pout[0], &perr[0]};
        int idx[2] = {io, ie};
        for (int j = 0; j < 2; j++) {
            if (idx[j] < 0 || !p[idx[j]].revents)
                continue;
            char chunk[4096];
            ssize_t got = read(*fds[j], chunk, sizeof chunk);
            if (got < 0 && errno == EINTR)
                continue;
            if (got <= 0) {
                close(*fds[j]);
                *fds[j] = -1;
            } else if (out_add(j ? &er : &out, chunk, (size_t)got, j == 1) < 0) {
                rc = mx_err_set(err, MX_ENOMEM, "%s: out of memory", tool->name);
                break;
            }
        }
        if (rc < 0)
            break;
    }
    if (rc < 0)
        kill(-pid, SIGKILL);
    /* the output is closed: the command has exited or closed it; wait for it within the
     * deadline, then kill it */
    while (waitpid(pid, &status, rc < 0 ? 0 : WNOHANG) == 0) {
        if (mx_time_s() > deadline || (canceled && canceled(ud))) {
            if (rc == 0)
                rc = canceled && canceled(ud)
                         ? mx_err_set(err, MX_ECANCELED, "%s: stopped", tool->name)
                         : mx_err_set(err, MX_ETIMEDOUT, "%s: killed after %g s without "
                                      "finishing", tool->name, tool->timeout_s);
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            break;
        }
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    pid = -1;
    if (rc == 0)
        rc = command_result(tool, status, &out, &er, result, err);
out:
    for (int i = 0; i < 2; i++) {
        if (pin[i] >= 0)
            close(pin[i]);
        if (pout[i] >= 0)
            close(pout[i]);
        if (perr[i] >= 0)
            close(perr[i]);
    }
    free(out.p);
    free(er.p);
    return rc;
}

/* ---- dispatch ------------------------------------------------------------------------------- */

int mx_tool_run(const struct mx_tools *t, const struct mx_tool *tool, const char *arguments,
                mx_tool_cancel_fn canceled, void *ud, char **result, struct mx_err *err) {
    *result = NULL;
    json_t *a = NULL;
    int rc = mx_tool_check_args(tool, arguments, &a, err);
    if (rc < 0)
        return rc;
    if (tool->kind == MX_TOOL_READ_FILE) {
        rc = mx_tool_read_file(t, json_string_value(json_object_get(a, "path")), result, err);
    } else if (tool->kind == MX_TOOL_COMMAND) {
        /* the checked object, re-encoded: what the command reads is exactly what was shown */
        char *in = json_dumps(a, JSON_COMPACT);
        rc = in ? mx_tool_run_command(tool, in, canceled, ud, result, err)
                : mx_err_set(err, MX_ENOMEM, "%s: out of memory", tool->name);
        free(in);
    } else {
        rc = mx_err_set(err, MX_EUNSUP, "%s: drawn by the front end's image job", tool->name);
    }
    json_decref(a);
    return rc;
}

/* ---- generate_image ------------------------------------------------------------------------- */

/* An integer argument in [lo, hi] (and a multiple of mult) into *v; absent: *v unchanged. */
static int int_arg(const json_t *a, const char *key, long long lo, long long hi, int mult,
                   long long *v, struct mx_err *err) {
    const json_t *x = json_object_get(a, key);
    if (!x)
        return 0;
    long long n = json_is_integer(x) ? json_integer_value(x) : (long long)json_number_value(x);
    if (n < lo || n > hi || (mult > 1 && n % mult))
        return mx_err_set(err, MX_EINVAL, "generate_image: %s must be in %lld..%lld%s", key,
                          lo, hi, mult > 1 ? ", a multiple of 8" : "");
    *v = n;
    return 0;
}

int mx_tool_image_req(const struct mx_tool *tool, const char *arguments,
                      struct mx_image_req *req, struct mx_err *err) {
    memset(req, 0, sizeof *req);
    req->cfg = -1;
    req->eta = -1;
    req->strength = -1;
    json_t *a = NULL;
    int rc = mx_tool_check_args(tool, arguments, &a, err);
    if (rc < 0)
        return rc;
    long long w = 0, h = 0, steps = 0, seed = -1;
    if ((rc = int_arg(a, "width", 64, 2048, 8, &w, err)) < 0 ||
        (rc = int_arg(a, "height", 64, 2048, 8, &h, err)) < 0 ||
        (rc = int_arg(a, "steps", 1, 150, 1, &steps, err)) < 0 ||
        (rc = int_arg(a, "seed", -1, 0xffffffffLL, 1, &seed, err)) < 0)
        goto out;
    const char *p = json_string_value(json_object_get(a, "prompt"));
    const char *neg = json_string_value(json_object_get(a, "negative_prompt"));
    if (!p || !p[0]) {
        rc = mx_err_set(err, MX_EINVAL, "generate_image: the prompt is empty");
        goto out;
    }
    req->prompt = strdup(p);
    req->negative = neg ? strdup(neg) : NULL;
    req->width = (int)w;
    req->height = (int)h;
    req->steps = (int)steps;
    req->seed_set = seed >= 0;
    req->seed = seed >= 0 ? (uint64_t)seed : 0;
    if (!req->prompt || (neg && !req->negative)) {
        mx_image_req_free(req);
        rc = mx_err_set(err, MX_ENOMEM, "generate_image: out of memory");
    }
out:
    json_decref(a);
    return rc;
}
